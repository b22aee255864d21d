"""`tpplan search`: validate the question, load the model and profiles, apply `--calibration`, pose the
question to the search stage and run its study (search.problem / search.driver hold the search logic).
"""

from __future__ import annotations

from .. import costmodel, io
from .. import search as search_stage
from ..errors import ConfigError
from ..prices import parse_prices, priced
from ..records import Plan, SearchResult
from ..records.requests import SearchQuestion, SearchRun, ServedAs
from ..search import Question
from ..search.rank import DEFAULT_SLO_TTFT_MS, band, pick  # noqa: F401  (the CLI reads them here)
from ..specs import HardwareProfile
from .refs import check_budget, check_context, load_model, load_profile

# The keywords of a search that say how to run it, not what is asked: search.run's.
RUN_OPTIONS = ("trials", "seed", "storage", "study", "out", "model_path", "progress", "hf_id", "served_model")


def prepare(
    model_ref: str,
    profile_refs: list[str],
    *,
    input_tokens: int,
    output_tokens: int,
    gpus: int | None = None,
    concurrency: int | None = None,
    slo_ttft_ms: float | None = DEFAULT_SLO_TTFT_MS,
    slo_tpot_ms: float | None = None,
    engine: str = "vllm",
    calibration: list[str] | None = None,
    pareto: bool = False,
    disaggregated: bool = True,
    dtypes: list[str] | None = None,
    kv_cache_dtypes: list[str] | None = None,
    max_model_len: int | None = None,
    tp: list[int] | str | None = None,
    pp: list[int] | str | None = None,
    prices: list[str] | None = None,
) -> search_stage.Prepared:
    """Validate the question once, apply calibration, build the space and the evaluator."""
    req = io.validate_request(
        SearchQuestion,
        {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "gpus": gpus,
            "concurrency": concurrency,
            "slo_ttft_ms": slo_ttft_ms,
            "slo_tpot_ms": slo_tpot_ms,
            "engine": engine,
            "calibration": list(calibration or []),
            "pareto": pareto,
            "disaggregated": disaggregated,
            "dtypes": dtypes,
            "kv_cache_dtypes": kv_cache_dtypes,
            "max_model_len": max_model_len,
            "tp": tp,
            "pp": pp,
            "prices": list(prices or []),
        },
    )
    if not profile_refs:
        raise ConfigError("no profile given", field="profiles", expected="one or more hardware profiles")
    model = load_model(model_ref)
    profiles: dict[str, HardwareProfile] = {}
    for ref in profile_refs:
        p = load_profile(ref)
        if p.name in profiles:
            raise ConfigError(f"profile {p.name!r} is given twice", field="profiles", value=str(ref))
        profiles[p.name] = p
    usd = parse_prices(req.prices, list(profiles))
    profiles = {n: priced(p, usd.get(n)) for n, p in profiles.items()}
    profiles, measured, notes = costmodel.apply_calibration(
        req.calibration, profiles, model=model, model_ref=str(model_ref)
    )
    budgets = {n: req.gpus or p.total_gpus for n, p in profiles.items()}
    for b in budgets.values():
        check_budget(b)
    context = req.max_model_len or req.input_tokens + req.output_tokens
    check_context(model, context, "max_model_len" if req.max_model_len else "input_tokens + output_tokens")
    q = Question(
        model.name,
        req.engine,
        req.input_tokens,
        req.output_tokens,
        req.concurrency,
        req.slo_ttft_ms,
        req.slo_tpot_ms,
        context,
        req.pareto,
        req.disaggregated,
    )
    return search_stage.pose(
        q,
        model,
        profiles=profiles,
        budgets=budgets,
        measured=measured,
        dtypes=list(req.dtypes or [model.dtype]),
        kv_dtypes=list(req.kv_cache_dtypes or ["auto"]),
        notes=notes,
        tp_pins=req.tp,
        pp_pins=req.pp,
    )


def search(
    model_ref: str, profile_refs: list[str], *, input_tokens: int, output_tokens: int, **options
) -> tuple[SearchResult, Plan]:
    """Run (or join, or resume) the study for this question and write the winner's plan. `options`: the
    question's (prepare: gpus, concurrency, SLOs, engine, calibration, pareto, disaggregated, dtypes,
    max_model_len)
    and the run's (search.run: trials, seed, storage, study, out, model_path, progress; hf_id and
    served_model: the repo id the plan serves and the name its clients use)."""
    run = {k: options.pop(k) for k in RUN_OPTIONS if k in options}
    io.validate_request(SearchRun, {k: run[k] for k in ("trials", "seed") if k in run})
    served = io.validate_request(ServedAs, {k: run.pop(k, None) for k in ("hf_id", "served_model")})
    prep = prepare(
        str(model_ref),
        [str(p) for p in profile_refs],
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        **options,
    )
    if served.hf_id:  # the repo the plan serves: what the engine loads unless --model-path names a dir
        prep.model = prep.model.model_copy(update={"hf_id": served.hf_id})
        run["model_path"] = run.get("model_path") or served.hf_id
    return search_stage.run(prep, served_model_name=served.served_model, **run)
