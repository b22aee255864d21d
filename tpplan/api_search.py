"""The façade's search half (`tpplan search`): validate the question, apply calibration, build the
space, hand the search stage an evaluator that composes the candidates stage and the cost model, and
write the winner as a plan. `api.search` is the entry point; this module keeps api.py short.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import api, engines, io
from . import candidates as candidates_stage
from . import search as search_stage
from .api_measured import Measured, apply_calibration, with_measured
from .errors import ConfigError, TpplanError
from .records import Layout, Plan, ScoredConfig, SearchResult
from .search import Config, Evaluation, Question, rank
from .search.rank import DEFAULT_SLO_TTFT_MS, rank_key
from .specs import HardwareProfile, ModelSpec, Workload

# Bump when the space, objective or stored record changes meaning (2: typed reasons; 3: intervals and
# the TTFT default): no resume across.
SEARCH_VERSION = 3
DEFAULT_OUT = Path("runs/search")
CONFIRM_NO_WINNER = 5000  # configurations scored (~1.5 ms each) to confirm that none is feasible
DEFAULT_TRIALS, DEFAULT_TRIALS_FRACTION = 200, 0.10  # --trials: at least 200, or a tenth of the space
EVALUATIONS_KEPT = 4096  # recent evaluations kept for asking again (a few kB each)
MAX_CLIMB = 10  # neighbour steps after the study; each is six evaluations (~10 ms)


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
        clients = q.concurrency or c.replicas * c.max_num_seqs
        workload = Workload(
            input_tokens=q.input_tokens,
            output_tokens=q.output_tokens,
            concurrency=clients,
            dtype=c.dtype,
            kv_cache_dtype=c.kv_cache_dtype,
        )  # type: ignore[arg-type]
        tp_limit = max(budget, profile.total_gpus)  # as serve_estimate judges it
        verdict = candidates_stage.judge(
            served, profile, layout, memory_engine, budget, q.max_model_len, workload.kv_dtype, tp_limit
        )
        est = api.serve_estimate(
            model, profile, layout, workload, q.engine, c.max_num_seqs, budget, q.max_model_len, verdict
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

    # The neighbours, the climb and the plan ask again for configurations the study evaluated.
    return functools.lru_cache(maxsize=EVALUATIONS_KEPT)(evaluate)


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
        pairs = search_stage.dtype_pairs(
            dtypes, kv_dtypes, p.gpu.supports_fp8, engine, model.activation_dtype
        )
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
    results: list[ScoredConfig], every: list[ScoredConfig] | None, q: Question, trials: int, study: str
) -> TpplanError:
    """Nothing feasible in the trials. `every` is the whole space scored when it is small enough: then
    the message says whether no configuration at all meets the SLOs, or the trials missed some."""
    slos = [
        f"{n} <= {v:g} ms" for n, v in (("TTFT", q.slo_ttft_ms), ("TPOT", q.slo_tpot_ms)) if v is not None
    ]
    if q.slo_ttft_ms == DEFAULT_SLO_TTFT_MS:
        slos[0] += " (the default; --slo-ttft-ms none lifts it)"
    what = f"meets the SLOs ({', '.join(slos)})" if slos else "fits and runs"
    if every is not None and any(r.feasible for r in every):
        n = sum(r.feasible for r in every)
        return TpplanError(
            f"no configuration {what} in {trials} trials (study {study}), but {n} of the "
            f"{len(every)} configurations do; raise --trials"
        )
    pool = every if every is not None else results
    closest = sorted(pool, key=lambda r: sum(v for v in r.violations.values() if v > 0))[:3]
    shown = "; ".join(f"{r.profile} {r.label()}: {r.reasons[0].uncited()}" for r in closest if r.reasons)
    shown = shown or "none"
    scope = (
        f"none of the {len(every)} configurations"
        if every is not None
        else f"no configuration in {trials} trials"
    )
    return TpplanError(
        f"{scope} {what} (study {study}); closest: {shown}; relax the SLOs, raise --gpus, add a --profile "
        "or allow --dtype fp8"
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


@dataclass
class Prepared:
    """A validated question and everything a study of it needs."""

    model: ModelSpec
    profiles: dict[str, HardwareProfile]
    question: Question
    space: search_stage.Space
    evaluate: Callable[[Config], Evaluation]
    fingerprint: dict
    notes: list[str]

    @property
    def study_name(self) -> str:
        digest = hashlib.sha256(json.dumps(self.fingerprint, sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.model.name}-{self.question.engine}-{digest}"


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
) -> Prepared:
    """Validate the question once, apply calibration, build the space and the evaluator."""
    check_numbers(gpus, input_tokens, output_tokens, concurrency, slo_ttft_ms, slo_tpot_ms, 1, max_model_len)
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
    for b in budgets.values():
        api.check_budget(b)
    api.check_context(
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
    space, space_notes = build_space(model, profiles, budgets, eng, dtypes, kv_dtypes, concurrency)
    return Prepared(
        model,
        profiles,
        q,
        space,
        evaluator(model, profiles, budgets, q, measured),
        fingerprint(q, model, profiles, budgets, dtypes, kv_dtypes),
        notes + space_notes,
    )


def exhaustive(prep: Prepared) -> list[ScoredConfig]:
    """Every configuration of the space, scored (the ground truth the bench and tests hold the search to)."""
    return [search_stage.score(c, prep.evaluate(c), prep.question) for c in prep.space.configs()]


def search(
    model_ref: str,
    profile_refs: list[str],
    input_tokens: int,
    output_tokens: int,
    *,
    trials: int | None = None,
    seed: int = 0,
    storage: str | None = None,
    study: str | None = None,
    out: str | Path | None = None,
    model_path: str | None = None,
    progress: Callable[[str], None] | None = None,
    **question,
) -> tuple[SearchResult, Plan]:
    """Run (or join, or resume) the study for this question and write the winner's plan; `question` is
    prepare()'s keywords (gpus, concurrency, SLOs, engine, calibration, pareto, dtypes, max_model_len)."""
    from .search import study as study_mod  # optuna: only when a search runs

    ensure(trials is None or (isinstance(trials, int) and trials >= 1), "--trials", trials, "an integer >= 1")
    prep = prepare(model_ref, profile_refs, input_tokens, output_tokens, **question)
    q, space, notes = prep.question, prep.space, list(prep.notes)
    run_dir, plan_file = plan_paths(out)
    io.make_dir(run_dir, "--out")
    name = study or prep.study_name
    url = storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"
    if trials is None:  # the bench's median is ~2% of the space, its worst seed ~4%: a 10% budget
        trials = max(DEFAULT_TRIALS, math.ceil(space.size * DEFAULT_TRIALS_FRACTION))
    if trials > space.size:
        notes.append(f"the space has {space.size} configurations: {space.size} trials evaluate them all")
        trials = space.size
    st, joined = study_mod.open_study(study_mod.open_storage(url), name, prep.fingerprint, q.pareto)
    collected = study_mod.run(space, q, prep.evaluate, st, trials, seed, joined, progress)
    feasible = [r for r in collected.results if r.feasible]
    if not feasible:  # score the whole space when that is quick, to say whether anything could pass
        every = exhaustive(prep) if space.size <= CONFIRM_NO_WINNER else None
        raise no_winner(collected.results, every, q, collected.trials, name)
    top, near = climb(prep, min(feasible, key=rank_key), notes)
    scored = rank.distinct([top, *collected.results, *(n.config for n in near if n.config is not None)])
    best, decision = rank.choose([r for r in scored if r.feasible])  # ties: lower latency wins
    if best != top:
        near = search_stage.neighbours(prep.space, best, prep.evaluate, q)
    plan = _plan(prep, best, near, model_path, decision.text)
    header = (
        f"# Written by `tpplan search` (study {name} in {url}): the configuration with the most output\n"
        f"# tokens per USD that fits and meets the SLOs; numbers are {best.basis} (see estimate, provenance).\n"
        f"# Launch it: tpplan emit {plan_file} --engine {q.engine}"
    )
    io.write_text(plan_file, io.to_yaml(plan, header))
    result = SearchResult(
        model=prep.model.name,
        engine=q.engine,
        best=best,
        top=rank.leaders(best, scored),
        pareto=search_stage.pareto_front(scored),
        decision=decision,
        best_per_profile=rank.best_per(scored, "profile"),
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


def climb(prep: Prepared, best: ScoredConfig, notes: list[str]) -> tuple[ScoredConfig, list]:
    """The study's best and its neighbours; a feasible neighbour that earns more takes its place (a
    budget-limited or NSGA-II study can stop next to a better configuration it never drew)."""
    near = search_stage.neighbours(prep.space, best, prep.evaluate, prep.question)
    for _ in range(MAX_CLIMB):
        better = [n.config for n in near if n.config is not None and n.config.feasible]
        better = [c for c in better if rank_key(c) < rank_key(best)]
        if not better:
            break
        step = min(better, key=rank_key)
        notes.append(
            f"{step.label()} (a neighbour of the study's best, {best.label()}) earns "
            f"{step.output_tokens_per_usd / best.output_tokens_per_usd:.3f}x its tokens/USD: it is the winner"
        )
        best = step
        near = search_stage.neighbours(prep.space, best, prep.evaluate, prep.question)
    return best, near


def _plan(prep: Prepared, best: ScoredConfig, near: list, model_path: str | None, decision: str) -> Plan:
    q = prep.question
    winner = search_stage.config_of(best)
    return Plan(
        model=prep.model,
        model_path=model_path or "",
        profile=prep.profiles[best.profile],
        engine=q.engine,  # type: ignore[arg-type]
        layout=Layout(tp=best.tp, pp=best.pp, replicas=best.replicas),
        max_num_seqs=best.max_num_seqs,
        max_model_len=q.max_model_len,
        dtype=best.dtype,
        kv_cache_dtype=best.kv_cache_dtype,  # type: ignore[arg-type]
        workload=Workload(
            input_tokens=q.input_tokens,
            output_tokens=q.output_tokens,
            concurrency=best.concurrency,
            dtype=best.dtype,
            kv_cache_dtype=best.kv_cache_dtype,  # type: ignore[arg-type]
            slo_ttft_ms=q.slo_ttft_ms,
            slo_tpot_ms=q.slo_tpot_ms,
        ),
        estimate=best,
        provenance=prep.evaluate(winner).estimate.provenance,
        why=[decision, *(n.lost_on for n in near)],
    )
