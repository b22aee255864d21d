"""`tpplan search`: the Optuna study for the most output tokens per USD under the SLOs, and its plan."""

from __future__ import annotations

import click

from .common import KV_AUTO_HELP, SEED_RANGE, echo_json, json_option, price_option, profile_option, table

ENGINES = ("vllm", "sglang", "megatron")


def _choice_list(flag: str, text: str | None, allowed: tuple[str, ...]) -> list[str] | None:
    from ..errors import ConfigError

    if text is None:
        return None
    from ..records.requests import comma_list  # pydantic: not at `tpplan --help` time

    items = comma_list(text)
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise ConfigError(
            f"{text!r} is not a list of {flag.lstrip('-').replace('-', ' ')}s",
            field=flag,
            expected=", ".join(allowed) + " separated by commas",
        )
    return list(dict.fromkeys(items))


def _ttft_limit(text: str | None) -> float | None:
    """--slo-ttft-ms: a number of ms, `none` (no limit), or absent (the search's default limit)."""
    from ..api.search import DEFAULT_SLO_TTFT_MS
    from ..errors import ConfigError

    if text is None:
        return DEFAULT_SLO_TTFT_MS
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise ConfigError(
            f"{text!r} is not a number", field="--slo-ttft-ms", expected="milliseconds > 0, or none"
        ) from None


@click.command()
@click.argument("model", metavar="MODEL")
@profile_option(multiple=True)
@click.option(
    "--gpus",
    type=int,
    help="GPU budget per profile (default: all GPUs of the profile; more than a node means several nodes).",
)
@click.option("--isl", type=int, required=True, help="Input (prompt) tokens per request.")
@click.option("--osl", type=int, required=True, help="Output tokens per request.")
@click.option(
    "--concurrency",
    type=int,
    help="Client requests in flight across the deployment (closed loop). "
    "Without it each replica runs full at the max_num_seqs the search picks, and replicas fill the budget.",
)
@click.option(
    "--slo-ttft-ms",
    "ttft_text",
    metavar="MS|none",
    help="Limit on mean time to first token [default: 2000, what AIConfigurator filters at; `none` lifts it].",
)
@click.option("--slo-tpot-ms", type=float, help="Limit on mean time per output token.")
@click.option(
    "--engine",
    "engine_text",
    metavar="ENGINE[,ENGINE]",
    default="vllm",
    show_default=True,
    help="Engine whose rules and costs apply: vllm, sglang or megatron; several (vllm,sglang) search each "
    "in its own study under --out/ENGINE and compare their winners.",
)
@click.option(
    "--trials",
    type=int,
    help="Trials in the study, shared by every worker on it; a re-run continues up to this many "
    "[default: 200 or 35% of the space's setups, whichever is more; never more than the setups].",
)
@click.option(
    "--seed",
    type=SEED_RANGE,
    default=0,
    show_default=True,
    help="Sampler seed (a joining worker adds its pid).",
)
@click.option(
    "--storage", metavar="URL", help="SQLAlchemy URL of the study (default: sqlite:///RUN_DIR/study.db)."
)
@click.option(
    "--study",
    "study_name",
    metavar="NAME",
    help="Study name (default: model, engine and a hash of the question).",
)
@click.option(
    "--calibration",
    multiple=True,
    metavar="[PROFILE=]FILE",
    help="Measurements to use: a calibrated profile YAML, a sweep run dir or results.jsonl, a bench dir, nccl-tests "
    "output or a serving CSV (measured TTFT/TPOT replace estimates where they match). Repeatable.",
)
@click.option("--pareto", is_flag=True, help="NSGA-II over tokens/USD, TPOT and TTFT; show the Pareto front.")
@click.option(
    "--disaggregated/--no-disaggregated",
    default=True,
    show_default=True,
    help="Also weigh disaggregated prefill/decode (x prefill + y decode instances, KV sent over the fabric; "
    "vLLM and SGLang on GPU profiles); --no-disaggregated plans aggregated serving only.",
)
@click.option(
    "--dtype",
    "dtype_text",
    metavar="LIST",
    help="Weight dtypes to search, e.g. bf16,fp8 (default: the model's; fp8 only on GPUs with FP8 tensor cores).",
)
@click.option(
    "--kv-cache-dtype",
    "kv_text",
    metavar="LIST",
    help="KV-cache dtypes to search, e.g. auto,fp8 [default: auto]. " + KV_AUTO_HELP,
)
@click.option("--tp", "tp_text", metavar="LIST", help="Search only these TP degrees, e.g. 8 or 4,8.")
@click.option("--pp", "pp_text", metavar="LIST", help="Search only these PP depths, e.g. 1 or 1,2.")
@price_option(multiple=True)
@click.option("--max-model-len", type=int, help="Context length one sequence must fit (default: ISL + OSL).")
@click.option("--model-path", help="What the engine loads (HF repo id or local dir), written into the plan.")
@click.option(
    "--hf-id",
    metavar="ORG/NAME",
    help="Hugging Face repo id the plan serves (default: the model spec's); what the engine loads unless "
    "--model-path names a local dir.",
)
@click.option(
    "--served-model",
    metavar="NAME",
    help="Name clients send in requests (vLLM/SGLang --served-model-name; default: what is loaded).",
)
@click.option(
    "--out",
    metavar="DIR|PLAN.yaml",
    help="Run directory (plan.yaml and study.db in it), or the plan file [default: runs/search].",
)
@json_option
def search(
    model: str,
    profile: tuple[str, ...],
    gpus: int | None,
    isl: int,
    osl: int,
    concurrency: int | None,
    ttft_text: str | None,
    slo_tpot_ms: float | None,
    engine_text: str,
    trials: int | None,
    seed: int,
    storage: str | None,
    study_name: str | None,
    calibration: tuple[str, ...],
    pareto: bool,
    disaggregated: bool,
    dtype_text: str | None,
    kv_text: str | None,
    max_model_len: int | None,
    tp_text: str | None,
    pp_text: str | None,
    prices: tuple[str, ...],
    model_path: str | None,
    hf_id: str | None,
    served_model: str | None,
    out: str | None,
    as_json: bool,
) -> None:
    """Search TP, PP, replicas, GPU type, max_num_seqs and dtype for the most output tokens per USD
    that fits and meets the SLOs, and write the plan. An Optuna study (seeded TPE; NSGA-II with
    --pareto) samples setups (GPU type, TP, PP, replicas, dtypes); each trial solves its setup's best
    integer max_num_seqs, 1 to what the KV cache holds, exactly (regula falsi on the SLO; tokens/USD
    and TPOT rise with it). When --trials covers the space every setup is evaluated. Disaggregated
    prefill/decode deployments are weighed beside them (--no-disaggregated: aggregated only). TTFT is
    limited to 2000 ms unless --slo-ttft-ms says otherwise (none lifts it); ties within the estimates'
    uncertainty go to lower latency, then fewer GPUs.

    Infeasible trials stay in the study with their reasons. Several `tpplan search` processes given the
    same --storage and --study share the work. Progress goes to stderr.

    \b
    Examples:
      tpplan search llama-3.1-70b --profile dgx-h100 --gpus 16 --isl 2048 --osl 256 --slo-tpot-ms 50
      tpplan search llama-3.1-70b --profile dgx-h100 --profile dgx-a100-80g --profile hgx-b200 --gpus 32 \\
          --isl 2048 --osl 256 --concurrency 512 --slo-tpot-ms 50 --dtype bf16,fp8 --pareto
      tpplan search qwen3-32b --profile dgx-h100 --isl 1024 --osl 512 --calibration serving.csv --json
      tpplan search llama-3.1-8b --profile dgx-h100 --isl 1024 --osl 128 --engine vllm,sglang --no-disaggregated
      tpplan search llama-3.1-70b --profile dgx-h100 --profile hgx-b200 --isl 2048 --osl 256 --tp 8 --pp 1 \\
          --price-usd-per-gpu-hour dgx-h100=2.10 --price-usd-per-gpu-hour hgx-b200=3.90
      tpplan search llama-3.1-70b --profile dgx-h100 --isl 2048 --osl 256 --storage sqlite:///shared.db --study s1 &
      tpplan search llama-3.1-70b --profile dgx-h100 --isl 2048 --osl 256 --storage sqlite:///shared.db --study s1
      tpplan search llama-3.1-8b --profile dgx-h100 --isl 1024 --osl 256 --hf-id meta-llama/Llama-3.1-8B-Instruct \\
          --served-model llama
      tpplan emit runs/search/plan.yaml --engine vllm
    """
    from .. import api

    options = {
        "gpus": gpus,
        "concurrency": concurrency,
        "slo_ttft_ms": _ttft_limit(ttft_text),
        "slo_tpot_ms": slo_tpot_ms,
        "trials": trials,
        "seed": seed,
        "storage": storage,
        "study": study_name,
        "calibration": list(calibration),
        "pareto": pareto,
        "disaggregated": disaggregated,
        "out": out,
        "dtypes": dtype_text,  # 'bf16,fp8': the request record splits and checks the list
        "kv_cache_dtypes": kv_text,
        "max_model_len": max_model_len,
        "tp": tp_text,
        "pp": pp_text,
        "prices": list(prices),
        "model_path": model_path,
        "hf_id": hf_id,
        "served_model": served_model,
        "progress": lambda line: click.echo(line, err=True),
    }
    from ..errors import ConfigError, TpplanError

    engines = _choice_list("--engine", engine_text, ENGINES) or ["vllm"]
    runs, failed = {}, {}
    try:
        for e in engines:  # several engines: a study and a plan each, under --out/ENGINE
            where = {} if len(engines) == 1 else _engine_out(out, study_name, e)
            try:
                runs[e] = api.search(
                    model,
                    list(profile),
                    input_tokens=isl,
                    output_tokens=osl,
                    **{**options, "engine": e, **where},
                )
            except TpplanError as err:  # one engine with no plan does not hide the others'
                if len(engines) == 1 or isinstance(err, ConfigError):
                    raise
                failed[e] = err
        if not runs:
            raise next(iter(failed.values()))
    except KeyboardInterrupt:
        click.echo(
            "interrupted: finished trials are kept in the study; run the same command to continue", err=True
        )
        raise SystemExit(130) from None
    from ..api.search import pick

    best = pick({e: r.best for e, (r, _) in runs.items()})
    if as_json:
        datas = {e: _json(r) for e, (r, _) in runs.items()}
        if len(engines) == 1:
            echo_json(datas[best])
        else:
            echo_json(
                {"best_engine": best, "engines": datas, "failed": {e: str(x) for e, x in failed.items()}}
            )
        return
    _summary(*runs[best], pareto)
    if len(runs) > 1:
        click.echo(
            f"\nbest per engine (the winner above is {best}'s; each engine's plan is under its own dir):"
        )
        rows = [(e, *_row(r.best), r.plan) for e, (r, _) in runs.items()]
        click.echo(table(rows, ["engine", *HEADERS, "plan"]))
        for e, err in failed.items():
            click.echo(f"  {e}: no plan: {err}")


def _engine_out(out: str | None, study: str | None, engine: str) -> dict:
    """One engine's run of a multi-engine search: its own directory (and study name, if one was given)."""
    from pathlib import Path

    base = Path(out) if out is not None else Path("runs/search")
    run_dir = base.parent / engine / base.name if base.suffix in (".yaml", ".yml", ".json") else base / engine
    return {"out": str(run_dir), "study": f"{study}-{engine}" if study else None}


def _json(result) -> dict:
    data = result.model_dump(mode="json")
    data["best"]["why"] = [n.lost_on for n in result.neighbours]  # what each neighbour lost on
    return data


def _row(r) -> tuple:
    from ..api.search import band  # loaded by then: the search ran

    moe = (f" EP{r.ep}" if r.ep > 1 else "") + (f" DPA{r.dp_attention}" if r.dp_attention > 1 else "")
    return (
        r.profile,
        f"{r.tp}{moe}",
        r.pp,
        r.replicas,
        r.gpus,
        r.max_num_seqs,
        r.concurrency,
        r.dtype + ("" if r.kv_cache_dtype == r.dtype else f"/{r.kv_cache_dtype}"),
        f"{r.output_tokens_per_usd:,.0f}",
        band(r),
        f"{r.output_tokens_per_s:,.0f}",
        f"{r.ttft_ms:,.0f}",
        f"{r.tpot_ms:.1f}",
        r.basis,
        _kind(r),
    )


def _kind(r) -> str:
    """aggregated, or the prefill side of a disaggregated row (tp, pp, replicas are its decode side)."""
    p = r.disaggregated.prefill if r.disaggregated else None
    return f"disagg: prefill TP{p.tp} PP{p.pp} x{p.replicas}" if p else "aggregated"


HEADERS = [
    "profile",
    "tp",
    "pp",
    "replicas",
    "gpus",
    "seqs/replica",
    "clients",
    "dtype",
    "tokens/USD",
    "80% range",
    "tokens/s",
    "TTFT ms",
    "TPOT ms",
    "numbers",
    "kind",
]


def _summary(result, plan, pareto: bool) -> None:
    b = result.best
    w = plan.workload
    slos = (
        ", ".join(f"{n} <= {v:g} ms" for n, v in (("TTFT", w.slo_ttft_ms), ("TPOT", w.slo_tpot_ms)) if v)
        or "no SLO"
    )
    click.echo(f"{result.model}, {result.engine}: ISL {w.input_tokens}, OSL {w.output_tokens}, {slos}")
    click.echo(
        f"{result.trials} trials ({result.evaluations} setups evaluated, {result.repeats} repeats) of a space of "
        f"{result.space_size} setups, each at its best max_num_seqs (solved exactly, not sampled); "
        f"{result.feasible} feasible. Study {result.study} in {result.storage}"
    )
    for note in result.notes:
        click.echo(f"  note: {note}")
    kv = "" if b.kv_cache_dtype == b.dtype else f", KV cache {b.kv_cache_dtype}"
    shape = f"TP={b.tp}{plan.layout.moe_label()} PP={b.pp} x{b.replicas} replicas"
    shape = shape if b.disaggregated is None else b.label()
    click.echo(
        f"\nwinner: {b.profile} ({plan.profile.gpu.name}), {shape} = {b.gpus} GPUs, "
        f"max_num_seqs {b.max_num_seqs} per replica ({b.concurrency} clients), {b.dtype}{kv}"
    )
    click.echo(
        f"  {b.output_tokens_per_usd:,.0f} output tokens/USD, {b.output_tokens_per_s:,.0f} tokens/s, "
        f"TTFT {b.ttft_ms:,.0f} ms, TPOT {b.tpot_ms:.1f} ms"
    )
    click.echo(
        f"  80% range: {b.output_tokens_per_usd_low:,.0f}-{b.output_tokens_per_usd_high:,.0f} tokens/USD, "
        f"TTFT {b.ttft_ms_low:,.0f}-{b.ttft_ms_high:,.0f} ms, TPOT {b.tpot_ms_low:.1f}-{b.tpot_ms_high:.1f} ms "
        f"({plan.provenance['uncertainty'].basis}: plan.yaml provenance.uncertainty)"
    )
    click.echo(f"  numbers: {result.basis_line}")
    if result.decision:
        click.echo(f"  {result.decision.text}")
    click.echo("\nwhy it won (its neighbours):")
    for n in result.neighbours:
        click.echo(f"  {n.lost_on}")
    click.echo("\ntop 5:")
    click.echo(table([_row(r) for r in result.top], HEADERS))
    if result.best_per_profile:
        click.echo("\nbest per GPU type:")
        click.echo(table([_row(r) for r in result.best_per_profile], HEADERS))
    if pareto:
        click.echo("\nPareto front (tokens/USD vs TPOT vs TTFT):")
        click.echo(table([_row(r) for r in result.pareto], HEADERS))
    click.echo(f"\nwrote {result.plan}; launch it: tpplan emit {result.plan} --engine {result.engine}")


COMMANDS = [search]
