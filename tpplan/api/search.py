"""`tpplan search`: validate the question, load the model and profiles, apply `--calibration`, pose the
question to the search stage and run its study (search.problem / search.driver hold the search logic).
"""

from __future__ import annotations

import math

from .. import costmodel
from .. import search as search_stage
from ..errors import ConfigError
from ..records import Plan, SearchResult
from ..search import Question
from ..search.rank import DEFAULT_SLO_TTFT_MS
from ..specs import HardwareProfile
from .refs import check_budget, check_context, check_engine, load_model, load_profile

# The keywords of a search that say how to run it, not what is asked: search.run's.
RUN_OPTIONS = ("trials", "seed", "storage", "study", "out", "model_path", "progress")


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


def prepare(
    model_ref: str,
    profile_refs: list[str],
    input_tokens: int,
    output_tokens: int,
    *,
    gpus: int | None = None,
    concurrency: int | None = None,
    slo_ttft_ms: float | None = DEFAULT_SLO_TTFT_MS,
    slo_tpot_ms: float | None = None,
    engine: str = "vllm",
    calibration: list[str] | None = None,
    pareto: bool = False,
    dtypes: list[str] | None = None,
    kv_cache_dtypes: list[str] | None = None,
    max_model_len: int | None = None,
) -> search_stage.Prepared:
    """Validate the question once, apply calibration, build the space and the evaluator."""
    check_numbers(gpus, input_tokens, output_tokens, concurrency, slo_ttft_ms, slo_tpot_ms, 1, max_model_len)
    eng = check_engine(engine)
    if not profile_refs:
        raise ConfigError("no profile given", field="--profile", expected="one or more hardware profiles")
    model = load_model(model_ref)
    profiles: dict[str, HardwareProfile] = {}
    for ref in profile_refs:
        p = load_profile(ref)
        if p.name in profiles:
            raise ConfigError(f"profile {p.name!r} is given twice", field="--profile", value=str(ref))
        profiles[p.name] = p
    profiles, measured, notes = costmodel.apply_calibration(
        list(calibration or []), profiles, model=model, model_ref=str(model_ref)
    )
    budgets = {n: gpus or p.total_gpus for n, p in profiles.items()}
    for b in budgets.values():
        check_budget(b)
    check_context(
        model,
        max_model_len or input_tokens + output_tokens,
        "--max-model-len" if max_model_len else "--isl + --osl",
    )
    dtypes, kv_dtypes = list(dtypes or [model.dtype]), list(kv_cache_dtypes or ["auto"])
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
    return search_stage.pose(
        q,
        model,
        profiles=profiles,
        budgets=budgets,
        measured=measured,
        dtypes=dtypes,
        kv_dtypes=kv_dtypes,
        notes=notes,
    )


def search(
    model_ref: str, profile_refs: list[str], input_tokens: int, output_tokens: int, **options
) -> tuple[SearchResult, Plan]:
    """Run (or join, or resume) the study for this question and write the winner's plan. `options`: the
    question's (prepare: gpus, concurrency, SLOs, engine, calibration, pareto, dtypes, max_model_len)
    and the run's (search.run: trials, seed, storage, study, out, model_path, progress)."""
    run = {k: options.pop(k) for k in RUN_OPTIONS if k in options}
    trials = run.get("trials")
    ensure(trials is None or (isinstance(trials, int) and trials >= 1), "--trials", trials, "an integer >= 1")
    prep = prepare(str(model_ref), [str(p) for p in profile_refs], input_tokens, output_tokens, **options)
    return search_stage.run(prep, **run)
