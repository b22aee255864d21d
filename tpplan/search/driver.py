"""A search run: the study over a posed question (problem.pose), the climb from its best to a better
neighbour, the ranking, the message when nothing is feasible, and the winner assembled into a Plan
written where `--out` says. optuna is imported only when a study runs (study.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from .. import io
from ..errors import TpplanError
from ..records import Layout, Plan, ScoredConfig, SearchResult
from ..specs import Workload
from . import rank
from .batch import every_integer, solve
from .explain import neighbours
from .objective import Question, basis_line, config_of, pareto_front
from .problem import Prepared
from .rank import DEFAULT_SLO_TTFT_MS, rank_key
from .space import Space
from .split import Split

DEFAULT_OUT = Path("runs/search")
CONFIRM_NO_WINNER = 500  # setups solved (~6 evaluations of ~2 ms each) to confirm that none is feasible
# --trials: at least 200, or 35% of the setups. Each trial is a whole setup solved exactly (~14 ms), and
# `make bench` (bench_search_tpe) measures TPE reaching a 1,080-setup space's optimum after a median of
# 31% of the setups (worst of 5 seeds 34%): a tenth stopped short of it.
DEFAULT_TRIALS, DEFAULT_TRIALS_FRACTION = 200, 0.35
MAX_CLIMB = 10  # neighbour steps after the study; each is six evaluations (~10 ms)


def plan_paths(out: str | Path | None) -> tuple[Path, Path]:
    """(run dir, plan file): `--out` is the plan file when it ends in .yaml/.yml/.json, else a directory."""
    out = Path(out) if out is not None else DEFAULT_OUT
    if out.suffix in (".yaml", ".yml", ".json"):
        return out.parent, out
    return out, out / "plan.yaml"


def no_winner(
    results: list[ScoredConfig], every: list[ScoredConfig] | None, *, q: Question, trials: int, study: str
) -> TpplanError:
    """Nothing feasible in the trials. `every` is every setup solved when the space is small enough: then
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
            f"{len(every)} setups do at their best max_num_seqs; raise --trials"
        )
    pool = every if every is not None else results
    closest = sorted(pool, key=lambda r: sum(v for v in r.violations.values() if v > 0))[:3]
    shown = "; ".join(f"{r.profile} {r.label()}: {r.reasons[0].uncited()}" for r in closest if r.reasons)
    shown = shown or "none"
    scope = (
        f"none of the {len(every)} setups, at any max_num_seqs,"
        if every is not None
        else f"no configuration in {trials} trials"
    )
    return TpplanError(
        f"{scope} {what} (study {study}); closest: {shown}; relax the SLOs, raise --gpus, add a --profile "
        "or allow --dtype fp8"
    )


def exhaustive(prep: Prepared) -> list[ScoredConfig]:
    """Every configuration of the space (each setup at every max_num_seqs of its range), scored one by
    one: the ground truth the bench and tests hold the search to."""
    q, space = prep.question, prep.space
    return [r for s in space.setups() for r in every_integer(space, s, evaluate=prep.evaluate, q=q)]


def solved_setups(prep: Prepared) -> list[ScoredConfig]:
    """Every setup of the space at its solved max_num_seqs (no study): whether anything is feasible."""
    return [solve(prep.space, s, evaluate=prep.evaluate, q=prep.question).best for s in prep.space.setups()]


def run(
    prep: Prepared,
    *,
    trials: int | None = None,
    seed: int = 0,
    storage: str | None = None,
    study: str | None = None,
    out: str | Path | None = None,
    model_path: str | None = None,
    served_model_name: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[SearchResult, Plan]:
    """Run (or join, or resume) the study of a posed question and write the winner's plan."""
    from . import study as study_mod  # optuna: only when a search runs

    q, space, notes = prep.question, prep.space, list(prep.notes)
    run_dir, plan_file = plan_paths(out)
    io.make_dir(run_dir, "out")
    name = study or prep.study_name
    url = storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"
    if trials is None:  # the bench's median is ~2% of the space, its worst seed ~4%: a 10% budget
        trials = max(DEFAULT_TRIALS, math.ceil(space.size * DEFAULT_TRIALS_FRACTION))
    if trials > space.size:
        notes.append(f"the space has {space.size} setups: {space.size} trials evaluate them all")
        trials = space.size
    st, joined = study_mod.open_study(
        study_mod.open_storage(url), name, question=prep.fingerprint, pareto=q.pareto
    )
    collected = study_mod.run(
        space, q, evaluate=prep.evaluate, study=st, trials=trials, seed=seed, joined=joined, progress=progress
    )
    top, near, scored = None, [], list(collected.results)
    if any(r.feasible for r in scored):
        top, near = climb(prep, min((r for r in scored if r.feasible), key=rank_key), notes=notes)
        # the neighbours join the choice when they are configurations of the space (without a client
        # load the replicas fill the budget: replicas-1 of the same instance is not a plan asked for)
        near_in_space = [n.config for n in near if n.config is not None and in_space(space, n.config)]
        scored = rank.distinct([top, *scored, *near_in_space])
    # the disaggregated deployments, scored beside the study's results (those that could tie with the
    # aggregated top are solved, not bounded away)
    split = Split(prep, aggregated_top=top)
    kinds = [r for r in scored if r.feasible], [r for r in split.results if r.feasible]
    if not kinds[0] and not kinds[1]:  # solve every setup when that is quick, to say whether any could pass
        every = solved_setups(prep) if space.size <= CONFIRM_NO_WINNER else None
        raise no_winner(collected.results, every, q=q, trials=collected.trials, study=name)
    scored = [*scored, *split.results]
    best, decision = rank.choose([*kinds[0], *kinds[1]])  # ties: lower latency wins
    # the note weighs the plan against the most tokens/USD of the other kind (what it beat or tied with)
    other = kinds[1] if best.disaggregated is None else kinds[0]
    best_other = min(other, key=rank.rank_key) if other else None
    agg, dis = (best, best_other) if best.disaggregated is None else (best_other, best)
    notes.extend(split.summary(agg, dis, winner=best))
    if best.disaggregated is None and best != top:
        leader = min([*kinds[0], *kinds[1]], key=rank.rank_key)  # whose interval the tie was judged in
        near = neighbours(prep.space, best, evaluate=prep.evaluate, q=q, tie_top=leader)
    elif best.disaggregated is not None and top is not None:  # what the best aggregated one's lost on
        tag = f"of the best aggregated ({top.label()})"
        near = [n.model_copy(update={"lost_on": f"{tag}: {n.lost_on}"}) for n in near]
    plan = assemble_plan(
        prep,
        best,
        near=near,
        model_path=model_path,
        served_model_name=served_model_name,
        decision=decision.text,
    )
    plan = split.plan(plan, best)
    header = (
        f"# Written by `tpplan search` (study {name} in {url}): the configuration with the most output\n"
        f"# tokens per USD that fits and meets the SLOs (ties within the estimates' uncertainty: the lower\n"
        f"# latency); numbers are {best.basis} (see estimate, provenance; `why` says how close it was).\n"
        f"# Launch it: tpplan emit {plan_file} --engine {q.engine}"
    )
    io.write_text(plan_file, io.to_yaml(plan, header))
    result = SearchResult(
        model=prep.model.name,
        engine=q.engine,
        best=best,
        top=rank.leaders(best, scored),
        pareto=pareto_front(scored + collected.probes),
        decision=decision,
        best_per_profile=rank.best_per(scored, "profile", winner=best),
        neighbours=near,
        trials=collected.trials,
        evaluations=len(collected.results),
        repeats=collected.repeats,
        feasible=len(kinds[0]) + len(kinds[1]),
        space_size=space.size,
        study=name,
        storage=url,
        plan=str(plan_file),
        basis_line=basis_line(plan.provenance),
        notes=notes,
    )
    return result, plan


def in_space(space: Space, r: ScoredConfig) -> bool:
    """Whether a result's setup is one the space holds (a neighbour can step outside it)."""
    arm = next((a for a in space.arms if a.profile == r.profile), None)
    return (
        arm is not None
        and r.tp in arm.tps
        and r.pp in space.pps(arm, r.tp)
        and r.replicas in space.replicas(arm, r.tp, pp=r.pp)
    )


def climb(prep: Prepared, best: ScoredConfig, *, notes: list[str]) -> tuple[ScoredConfig, list]:
    """The study's best and its neighbours; a feasible neighbour that earns more takes its place (a
    budget-limited or NSGA-II study can stop next to a better configuration it never drew)."""
    near = neighbours(prep.space, best, evaluate=prep.evaluate, q=prep.question)
    for _ in range(MAX_CLIMB):
        better = [n.config for n in near if n.config is not None and n.config.feasible]
        better = [c for c in better if rank_key(c) < rank_key(best)]
        better = [c for c in better if in_space(prep.space, c)]  # the space's degrees; --tp/--pp pins hold
        if not better:
            break
        step = min(better, key=rank_key)
        notes.append(
            f"{step.label()} (a neighbour of the study's best, {best.label()}) earns "
            f"{step.output_tokens_per_usd / best.output_tokens_per_usd:.3f}x its tokens/USD: it is the winner"
        )
        best = step
        near = neighbours(prep.space, best, evaluate=prep.evaluate, q=prep.question)
    return best, near


def assemble_plan(
    prep: Prepared,
    best: ScoredConfig,
    *,
    near: list,
    model_path: str | None,
    served_model_name: str | None = None,
    decision: str = "",
) -> Plan:
    """The winner as a Plan: its layout, limits, workload, estimate, provenance and what its neighbours lost on."""
    q = prep.question
    winner = config_of(best)
    return Plan(
        model=prep.model,
        model_path=model_path or "",
        served_model_name=served_model_name or "",
        profile=prep.profiles[best.profile],
        engine=q.engine,  # type: ignore[arg-type]
        layout=Layout(
            tp=best.tp, pp=best.pp, replicas=best.replicas, ep=best.ep, dp_attention=best.dp_attention
        ),
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
        why=[*([decision] if decision else []), *(n.lost_on for n in near)],
    )
