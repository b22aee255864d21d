"""Disaggregated prefill/decode in the search: every deployment of x prefill and y decode instances the
space's GPU types, layouts and dtypes allow, scored with the same objective and constraints as the
aggregated configurations, so the winner may be either kind.

The disaggregated part is enumerated, not sampled: per GPU type and dtype pair it is the prefill
layout × the decode layout × their counts within the budget × the decode side's max_num_seqs, and
layouts that do not fit or that the engine refuses are dropped once, before pairing. Each deployment
is priced in closed form (costmodel/disagg.py); those whose upper bound on tokens/USD cannot reach
the top list are counted and not solved (evaluate_all).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..records import Candidate, Disaggregated, Layout, Provenance, Reason, ScoredConfig
from .objective import Evaluation, Question, _memory
from .objective import score as objective_score
from .space import Config, Space


@dataclass(frozen=True)
class Side:
    """One instance kind: tp × pp GPUs each, `count` of them."""

    tp: int
    pp: int
    count: int

    @property
    def world(self) -> int:
        return self.tp * self.pp

    @property
    def gpus(self) -> int:
        return self.world * self.count

    def layout(self) -> Layout:
        return Layout(tp=self.tp, pp=self.pp, replicas=self.count)


@dataclass(frozen=True)
class DisaggConfig:
    profile: str
    prefill: Side
    decode: Side
    max_num_seqs: int  # per decode instance
    dtype: str
    kv_cache_dtype: str

    @property
    def gpus(self) -> int:
        return self.prefill.gpus + self.decode.gpus


@dataclass(frozen=True)
class DisaggEvaluation:
    """A disaggregated deployment as the façade's pricer sees it."""

    prefill: Candidate  # one prefill instance, judged (engine rules, memory)
    decode: Candidate  # one decode instance
    placement_problem: str | None  # why the instances cannot be placed on the budget
    ttft_ms: float
    tpot_ms: float
    output_tokens_per_s: float
    output_tokens_per_usd: float
    concurrency: int  # clients across the deployment
    kv_transfer_ms: float
    kv_fabric: str
    prefill_utilization: float
    balanced_ratio: float
    fitted: bool  # some cost-model input was fitted to measurements

    @property
    def provenance(self) -> dict[str, Provenance]:
        """What objective.basis reads: whether any input was fitted (the plan lists them all)."""
        basis = "fitted" if self.fitted else "assumed"
        return {
            "cost_model": Provenance(value="closed-loop disaggregated model", basis=basis, source="costmodel")
        }


Judge = Callable[[str, int, int, str, str], Candidate]  # (profile, tp, pp, dtype, kv) -> one instance
Price = Callable[[DisaggConfig], DisaggEvaluation]
Bound = Callable[[DisaggConfig], float]  # tokens/USD no solution of the deployment can exceed
KEEP = 5  # the search's top list


def _usable(c: Candidate) -> bool:
    return c.engine_ok and _memory(c) <= 0 and c.kv_cache_tokens > 0


def configs(space: Space, judge: Judge, sequence_tokens: int) -> Iterator[DisaggConfig]:
    """Every disaggregated deployment of the space whose two instance kinds run and fit on their own;
    the decode side's max_num_seqs takes the space's values (the aggregated side's) that its KV cache
    holds: more would be refused by the kv_cache constraint anyway."""
    for arm in space.arms:
        for dtype, kv in arm.dtypes:
            held = {  # requests of I + O tokens one instance's KV cache holds, for the layouts that run
                (tp, pp): cand.kv_cache_tokens // sequence_tokens
                for tp in arm.tps
                for pp in space.pps(arm, tp)
                if tp * pp < arm.budget_gpus and _usable(cand := judge(arm.profile, tp, pp, dtype, kv))
            }
            for ptp, ppp in held:
                for (dtp, dpp), most_seqs in held.items():
                    for x in range(1, (arm.budget_gpus - dtp * dpp) // (ptp * ppp) + 1):
                        most_y = (arm.budget_gpus - x * ptp * ppp) // (dtp * dpp)
                        for y in range(1, most_y + 1):
                            # the space's values (as the aggregated side gets them) the KV cache holds
                            choices = {space.seqs_at(k, y) for k in range(len(space.seqs))}
                            for seqs in sorted(s for s in choices if s <= most_seqs):
                                yield DisaggConfig(
                                    arm.profile, Side(ptp, ppp, x), Side(dtp, dpp, y), seqs, dtype, kv
                                )


def score(c: DisaggConfig, ev: DisaggEvaluation, q: Question) -> ScoredConfig:
    """objective.score on the decode side (its engine rules, memory, KV cache, and the deployment's
    SLOs), then the prefill side's engine rules and memory and the placement of both."""
    d = c.decode
    decode_side = Config(c.profile, d.tp, d.pp, d.count, c.max_num_seqs, c.dtype, c.kv_cache_dtype)
    s = objective_score(decode_side, Evaluation(ev.decode, ev), q)  # type: ignore[arg-type]
    values, reasons = dict(s.violations), list(s.reasons)
    if not ev.prefill.engine_ok:
        values["engine"] = 1.0
        reasons += [r for r in ev.prefill.reasons if r.kind == "engine"][:1]
    if (m := _memory(ev.prefill)) > 0:
        values["memory"] = max(values["memory"], round(m, 6))
        reasons.append(Reason(kind="memory", text="a prefill instance does not fit in memory"))
    if ev.placement_problem:
        values["placement"] = 1.0
        reasons.append(Reason(kind="placement", text=ev.placement_problem))
    split = Disaggregated(
        prefill=c.prefill.layout(),
        kv_transfer_ms=round(ev.kv_transfer_ms, 3),
        kv_fabric=ev.kv_fabric,
        prefill_utilization=round(ev.prefill_utilization, 4),
        balanced_ratio=round(ev.balanced_ratio, 4),
    )
    update = {"gpus": c.gpus, "violations": values, "reasons": reasons, "kind": "disaggregated"}
    feasible = all(v <= 0 for v in values.values())
    return s.model_copy(update={**update, "feasible": feasible, "disaggregated": split})


def config_of(s: ScoredConfig) -> DisaggConfig:
    """The deployment a disaggregated result was scored for."""
    assert s.disaggregated is not None
    p = s.disaggregated.prefill
    return DisaggConfig(
        s.profile,
        Side(p.tp, p.pp, p.replicas),
        Side(s.tp, s.pp, s.replicas),
        s.max_num_seqs,
        s.dtype,
        s.kv_cache_dtype,
    )


def evaluate_all(
    space: Space, q: Question, judge: Judge, price: Price, bound: Bound | None = None, keep: int = KEEP
) -> tuple[list[ScoredConfig], int]:
    """The disaggregated deployments of the space, scored, and how many were left unsolved.

    With `bound` (an upper bound on a deployment's tokens/USD that needs no solve), deployments are
    taken best bound first, and one whose bound is below the `keep`-th best feasible result so far
    cannot enter the top `keep` nor win: it is counted, not solved. A Pareto search solves them all
    (a deployment below on tokens/USD may still be ahead on latency)."""
    every = list(configs(space, judge, q.sequence_tokens))
    if bound is None or q.pareto:
        return [score(c, price(c), q) for c in every], 0
    bounds = {c: bound(c) for c in every}
    best: list[float] = []  # the top `keep` feasible tokens/USD so far, a min-heap
    out, skipped = [], 0
    for c in sorted(every, key=lambda c: -bounds[c]):
        if len(best) == keep and bounds[c] < best[0]:
            skipped += 1
            continue
        s = score(c, price(c), q)
        out.append(s)
        if s.feasible:
            heapq.heappush(best, s.output_tokens_per_usd)
            if len(best) > keep:
                heapq.heappop(best)
    return out, skipped


def compare(aggregated: ScoredConfig, disaggregated: ScoredConfig | None) -> str:
    """One line: which kind won the search and by how much, in tokens per USD."""
    if disaggregated is None:
        return "disaggregated prefill/decode: no deployment of it fits and meets the SLOs"
    ratio = disaggregated.output_tokens_per_usd / aggregated.output_tokens_per_usd
    d = disaggregated.disaggregated
    assert d is not None
    detail = (
        f"{disaggregated.label()}: {disaggregated.output_tokens_per_usd:,.0f} tok/$, TTFT "
        f"{disaggregated.ttft_ms:,.0f} ms (KV transfer {d.kv_transfer_ms:.1f} ms over {d.kv_fabric}), TPOT "
        f"{disaggregated.tpot_ms:.1f} ms, prefill busy {d.prefill_utilization:.0%}, balanced at "
        f"{d.balanced_ratio:.2f} prefill per decode instance"
    )
    verdict = "wins" if ratio > 1 else "loses"
    return (
        f"disaggregated prefill/decode {verdict} ({ratio:.3f}x the best aggregated tokens/USD, "
        f"{aggregated.output_tokens_per_usd:,.0f}): {detail}"
    )
