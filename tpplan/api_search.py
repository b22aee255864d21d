"""The façade's search half (`tpplan search`): validate the question, apply calibration, build the
space, hand the search stage an evaluator that composes the candidates stage and the cost model, and
write the winner as a plan. `api.search` is the entry point; this module keeps api.py short.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import api, costmodel, engines, io
from . import candidates as candidates_stage
from . import search as search_stage
from .errors import ConfigError, TpplanError
from .records import Layout, Plan, ScoredConfig, SearchResult, ServeEstimate
from .search import Config, Evaluation, Question
from .specs import HardwareProfile, ModelSpec, Workload

# Bump when the space or the objective changes meaning: a study of an older search is not resumed.
SEARCH_VERSION = 1
DEFAULT_OUT = Path("runs/search")


@dataclass
class Measured:
    """Serving points measured at exact configurations: (profile, engine, dtype, tp, pp, isl, osl, C) ->
    (ttft_ms, tpot_ms, where)."""

    points: dict[tuple, tuple[float, float, str]] = field(default_factory=dict)


def _model_key(name: str) -> str:
    """`meta-llama/Llama-3.1-70B-Instruct` and `Llama-3.1-70B` name the same model."""
    key = name.rstrip("/").split("/")[-1].lower()
    for suffix in ("-instruct", "-chat", "-base", "-hf"):
        key = key.removesuffix(suffix)
    return key


def _split_entry(entry: str, profiles: dict[str, HardwareProfile]) -> tuple[str | None, Path]:
    """`[PROFILE=]FILE`: which profile the measurements were taken on."""
    name, sep, rest = entry.partition("=")
    if sep and name in profiles:
        return name, Path(rest)
    return None, Path(entry)


def apply_calibration(
    entries: list[str], profiles: dict[str, HardwareProfile], model: ModelSpec, model_ref: str
) -> tuple[dict[str, HardwareProfile], Measured, list[str]]:
    """Each `--calibration`: a calibrated profile replaces the profile of its name; a measurement (a
    sweep run dir or results.jsonl, nccl-tests output, serving CSV) is fitted into its profile by
    `api.calibrate`, and serving points of the searched model are kept to stand in for estimates."""
    measured, notes = Measured(), []
    for entry in entries:
        target, path = _split_entry(entry, profiles)
        if path.is_dir():
            path = path / "results.jsonl"
            if not path.is_file():
                raise ConfigError(
                    "has no results.jsonl",
                    file=str(path.parent),
                    field="--calibration",
                    expected="a sweep run directory, or a results.jsonl / nccl-tests / serving CSV file",
                )
        if target is None:
            if path.suffix not in (".yaml", ".yml") and len(profiles) > 1:
                raise ConfigError(
                    f"{entry!r} does not say which profile it was measured on",
                    field="--calibration",
                    expected=f"PROFILE=FILE with PROFILE one of {', '.join(profiles)}",
                )
            target = next(iter(profiles))
        if path.suffix in (".yaml", ".yml"):
            calibrated = api.load_profile(path)
            name = calibrated.name if calibrated.name in profiles else target
            profiles[name] = calibrated
            notes.append(f"{name}: calibrated profile {path}")
            continue
        src = costmodel.read_source(path)
        ours = {
            p.model: model_ref
            for p in src.points
            if src.kind == costmodel.SERVING and _model_key(p.model) == _model_key(model.name)
        }
        cal, profiles[target] = api.calibrate([path], profiles[target], models=ours)
        notes.append(f"{target}: fitted {', '.join(f for s in cal.sources for f in s.fitted)} to {path}")
        for p in src.points if src.kind == costmodel.SERVING else []:
            if _model_key(p.model) == _model_key(model.name):
                key = (target, p.engine, p.dtype, p.tp, p.pp, p.isl, p.osl, p.concurrency)
                measured.points[key] = (p.ttft_ms, p.tpot_ms, f"{path} line {p.line}")
    return profiles, measured, notes


def with_measured(e: ServeEstimate, ttft_ms: float, tpot_ms: float, where: str) -> ServeEstimate:
    """The estimate with measured TTFT/TPOT; throughput from them by Little's law: each replica's
    C clients complete C / (TTFT + (O−1)·TPOT) requests per unit time."""
    per_instance_c = e.concurrency / e.layout.replicas
    rate_s = per_instance_c / (ttft_ms + (e.output_tokens - 1) * tpot_ms) * 1e3
    tokens_s = rate_s * e.output_tokens * e.layout.replicas
    return e.model_copy(
        update={
            "ttft_ms": round(ttft_ms, 3),
            "tpot_ms": round(tpot_ms, 4),
            "output_tokens_per_s": round(tokens_s, 2),
            "requests_per_s": round(rate_s * e.layout.replicas, 4),
            "output_tokens_per_s_per_instance": round(tokens_s / e.layout.replicas, 2),
            "requests_per_s_per_instance": round(rate_s, 4),
            "output_tokens_per_usd": round(tokens_s * 3600 / e.usd_per_hour, 1) if e.usd_per_hour else 0.0,
            "provenance": {
                **e.provenance,
                "measured": f"TTFT {ttft_ms:g} ms and TPOT {tpot_ms:g} ms measured at this "
                f"layout and load ({where}); throughput by Little's law, C / (TTFT + (O-1)·TPOT)",
            },
        }
    )


def evaluator(
    model: ModelSpec,
    profiles: dict[str, HardwareProfile],
    budgets: dict[str, int],
    q: Question,
    measured: Measured,
) -> Callable[[Config], Evaluation]:
    """Config -> Evaluation: the candidates stage's verdict and the cost model's (or a measurement's) numbers."""
    memory_engine = api.check_engine(q.engine)

    def evaluate(c: Config) -> Evaluation:
        profile, budget = profiles[c.profile], budgets[c.profile]
        layout = Layout(tp=c.tp, pp=c.pp, replicas=c.replicas)
        served = model.model_copy(update={"dtype": c.dtype})
        verdict = candidates_stage.judge(
            served, profile, layout, memory_engine, budget, q.max_model_len, c.kv_cache_dtype
        )
        clients = q.concurrency or c.replicas * c.max_num_seqs
        workload = Workload(
            input_tokens=q.input_tokens,
            output_tokens=q.output_tokens,
            concurrency=clients,
            dtype=c.dtype,
            kv_cache_dtype=c.kv_cache_dtype,
        )  # type: ignore[arg-type]
        est = api.serve_estimate(
            model, profile, layout, workload, q.engine, c.max_num_seqs, budget, q.max_model_len
        )
        per_replica = clients / c.replicas
        hit = None
        if c.kv_cache_dtype == c.dtype and per_replica == int(per_replica) and c.max_num_seqs >= per_replica:
            hit = measured.points.get(
                (c.profile, q.engine, c.dtype, c.tp, c.pp, q.input_tokens, q.output_tokens, int(per_replica))
            )
        if hit:
            return Evaluation(verdict, with_measured(est, *hit), hit[2])
        return Evaluation(verdict, est)

    return evaluate


def build_space(
    model: ModelSpec,
    profiles: dict[str, HardwareProfile],
    budgets: dict[str, int],
    engine: str,
    dtypes: list[str],
    kv_dtypes: list[str],
    concurrency: int | None,
) -> tuple[search_stage.Space, list[str]]:
    arms, notes = [], []
    for name, p in profiles.items():
        budget = budgets[name]
        tps = tuple(engines.accepted_tp(engine, model, budget))  # type: ignore[arg-type]
        pairs = search_stage.dtype_pairs(dtypes, kv_dtypes, p.gpu.supports_fp8, engine)
        if not tps:
            notes.append(f"{name}: {engine} accepts no TP degree up to {budget} for {model.name}")
        elif not pairs:
            notes.append(f"{name}: {p.gpu.name} runs none of the dtypes asked for ({', '.join(dtypes)})")
        else:
            arms.append(search_stage.Arm(name, budget, tps, min(model.num_layers, budget), pairs))
    if not arms:
        raise ConfigError(
            "; ".join(notes) + ": nothing to search",
            field="--profile",
            expected="a profile whose GPUs run the model's dtype (fp8 needs FP8 tensor cores)",
        )
    return search_stage.Space(tuple(arms), concurrency), notes


def fingerprint(
    q: Question,
    model: ModelSpec,
    profiles: dict[str, HardwareProfile],
    budgets: dict[str, int],
    dtypes: list[str],
    kv_dtypes: list[str],
) -> dict:
    """What makes two searches the same study: everything that changes a trial's answer."""

    def digest(obj) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]

    return {
        "version": SEARCH_VERSION,
        "model": model.name,
        "model_spec": digest(model.model_dump(mode="json")),
        "profiles": {n: digest(p.model_dump(mode="json")) for n, p in profiles.items()},
        "budgets": budgets,
        "engine": q.engine,
        "isl": q.input_tokens,
        "osl": q.output_tokens,
        "concurrency": q.concurrency,
        "slo_ttft_ms": q.slo_ttft_ms,
        "slo_tpot_ms": q.slo_tpot_ms,
        "max_model_len": q.max_model_len,
        "dtypes": dtypes,
        "kv_cache_dtypes": kv_dtypes,
        "pareto": q.pareto,
    }


def plan_paths(out: str | Path | None) -> tuple[Path, Path]:
    """(run dir, plan file): `--out` is the plan file when it ends in .yaml/.yml/.json, else a directory."""
    out = Path(out) if out is not None else DEFAULT_OUT
    if out.suffix in (".yaml", ".yml", ".json"):
        return out.parent, out
    return out, out / "plan.yaml"


def no_winner(
    results: list[ScoredConfig], q: Question, trials: int, space_size: int, study: str
) -> TpplanError:
    slos = [
        f"{n} <= {v:g} ms" for n, v in (("TTFT", q.slo_ttft_ms), ("TPOT", q.slo_tpot_ms)) if v is not None
    ]
    closest = sorted(results, key=lambda r: sum(v for v in r.violations.values() if v > 0))[:3]
    shown = (
        "; ".join(f"{r.profile} {r.label()}: {r.reasons[0]}" for r in closest if r.reasons)
        or "none evaluated"
    )
    what = f"met the SLOs ({', '.join(slos)})" if slos else "fits and runs"
    return TpplanError(
        f"no configuration {what} in {trials} trials of {space_size} configurations (study {study}); "
        f"closest: {shown}; relax the SLOs, raise --gpus, add a --profile or allow --dtype fp8"
    )


def ensure(cond: bool, field: str, value, expected: str) -> None:
    if not cond:
        raise ConfigError(f"{value!r} is not allowed", field=field, expected=expected)


def check_numbers(gpus, isl, osl, concurrency, slo_ttft_ms, slo_tpot_ms, trials, max_model_len) -> None:
    for flag, v in (("--gpus", gpus), ("--concurrency", concurrency), ("--max-model-len", max_model_len)):
        ensure(v is None or (isinstance(v, int) and v >= 1), flag, v, "an integer >= 1")
    for flag, v in (("--isl", isl), ("--osl", osl), ("--trials", trials)):
        ensure(isinstance(v, int) and v >= 1, flag, v, "an integer >= 1")
    for flag, v in (("--slo-ttft-ms", slo_ttft_ms), ("--slo-tpot-ms", slo_tpot_ms)):
        ensure(v is None or (v > 0 and math.isfinite(v)), flag, v, "a positive number of milliseconds")
    if max_model_len is not None and max_model_len < isl + osl:
        raise ConfigError(
            f"{max_model_len} is shorter than one request ({isl} + {osl} tokens)",
            field="--max-model-len",
            expected=f"at least {isl + osl}",
        )


def search(
    model_ref: str,
    profile_refs: list[str],
    input_tokens: int,
    output_tokens: int,
    *,
    gpus: int | None = None,
    concurrency: int | None = None,
    slo_ttft_ms: float | None = None,
    slo_tpot_ms: float | None = None,
    engine: str = "vllm",
    trials: int = 200,
    seed: int = 0,
    storage: str | None = None,
    study: str | None = None,
    calibration: list[str] | None = None,
    pareto: bool = False,
    out: str | Path | None = None,
    dtypes: list[str] | None = None,
    kv_cache_dtypes: list[str] | None = None,
    max_model_len: int | None = None,
    model_path: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[SearchResult, Plan]:
    """Run (or join, or resume) the study for this question and write the winner's plan."""
    from .search import study as study_mod  # optuna: only when a search runs

    check_numbers(
        gpus, input_tokens, output_tokens, concurrency, slo_ttft_ms, slo_tpot_ms, trials, max_model_len
    )
    eng = api.check_engine(engine)
    if not profile_refs:
        raise ConfigError("no profile given", field="--profile", expected="one or more hardware profiles")
    model = api.load_model(model_ref)
    profiles: dict[str, HardwareProfile] = {}
    for ref in profile_refs:
        p = api.load_profile(ref)
        if p.name in profiles:
            raise ConfigError(f"profile {p.name!r} is given twice", field="--profile", value=str(ref))
        profiles[p.name] = p
    profiles, measured, notes = apply_calibration(list(calibration or []), profiles, model, str(model_ref))
    budgets = {n: gpus or p.total_gpus for n, p in profiles.items()}
    dtypes = list(dtypes or [model.dtype])
    kv_dtypes = list(kv_cache_dtypes or ["auto"])
    q = Question(
        model.name,
        eng,
        input_tokens,
        output_tokens,
        concurrency,
        slo_ttft_ms,
        slo_tpot_ms,
        max_model_len or input_tokens + output_tokens,
        pareto,
    )
    space, space_notes = build_space(model, profiles, budgets, eng, dtypes, kv_dtypes, concurrency)
    notes += space_notes
    run_dir, plan_file = plan_paths(out)
    question = fingerprint(q, model, profiles, budgets, dtypes, kv_dtypes)
    name = (
        study
        or f"{model.name}-{eng}-{hashlib.sha256(json.dumps(question, sort_keys=True).encode()).hexdigest()[:10]}"
    )
    url = storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"
    if trials > space.size:
        notes.append(f"the space has {space.size} configurations: {space.size} trials evaluate them all")
        trials = space.size
    rdb = study_mod.open_storage(url)
    st, joined = study_mod.open_study(rdb, name, question, pareto)
    evaluate = evaluator(model, profiles, budgets, q, measured)
    collected = study_mod.run(space, q, evaluate, st, trials, seed, joined, progress)
    feasible = [r for r in collected.results if r.feasible]
    if not feasible:
        raise no_winner(collected.results, q, collected.trials, space.size, name)
    ranked = sorted(feasible, key=lambda r: (-r.output_tokens_per_usd, -r.output_tokens_per_s, r.tpot_ms))
    best = ranked[0]
    near = search_stage.neighbours(space, best, evaluate, q)
    winner_ev = evaluate(
        Config(
            best.profile, best.tp, best.pp, best.replicas, best.max_num_seqs, best.dtype, best.kv_cache_dtype
        )
    )
    plan = Plan(
        model=model,
        model_path=model_path or "",
        profile=profiles[best.profile],
        engine=eng,
        layout=Layout(tp=best.tp, pp=best.pp, replicas=best.replicas),
        max_num_seqs=best.max_num_seqs,
        max_model_len=q.max_model_len,
        dtype=best.dtype,
        kv_cache_dtype=best.kv_cache_dtype,  # type: ignore[arg-type]
        workload=Workload(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            concurrency=best.concurrency,
            dtype=best.dtype,
            kv_cache_dtype=best.kv_cache_dtype,  # type: ignore[arg-type]
            slo_ttft_ms=slo_ttft_ms,
            slo_tpot_ms=slo_tpot_ms,
        ),
        estimate=best,
        provenance=winner_ev.estimate.provenance,
        why=[n.lost_on for n in near],
    )
    header = (
        f"# Written by `tpplan search` (study {name} in {url}): the configuration with the most output\n"
        f"# tokens per USD that fits and meets the SLOs; numbers are {best.basis} (see estimate, provenance).\n"
        f"# Launch it: tpplan emit {plan_file} --engine {eng}"
    )
    io.write_text(plan_file, io.to_yaml(plan, header))
    result = SearchResult(
        model=model.name,
        engine=eng,
        best=best,
        top=ranked[:5],
        pareto=search_stage.pareto_front(collected.results),
        neighbours=near,
        trials=collected.trials,
        evaluations=len(collected.results),
        repeats=collected.repeats,
        feasible=len(feasible),
        space_size=space.size,
        study=name,
        storage=url,
        plan=str(plan_file),
        notes=notes,
    )
    return result, plan
