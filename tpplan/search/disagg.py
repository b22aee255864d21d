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

import bisect
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
    ttft_ms_low: float  # the 80% interval (costmodel/spread.py)
    ttft_ms_high: float
    tpot_ms_low: float
    tpot_ms_high: float
    output_tokens_per_usd_low: float
    output_tokens_per_usd_high: float
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
GroupBound = Callable[["Group"], float]  # ... nor of any deployment of the group
KEEP = 5  # the search's top list
PARETO_SOLVE_ALL = 5000  # deployments a Pareto search solves in full (~0.6 ms each)


def _usable(c: Candidate) -> bool:
    return c.engine_ok and _memory(c) <= 0 and c.kv_cache_tokens > 0


@dataclass(frozen=True)
class Group:
    """The deployments that share a GPU type, dtypes, both instance layouts and the decode side's
    max_num_seqs, and differ in their counts x and y."""

    profile: str
    dtype: str
    kv_cache_dtype: str
    prefill: tuple[int, int]  # tp, pp
    decode: tuple[int, int]
    max_num_seqs: int
    budget_gpus: int
    ys: tuple[int, ...]  # decode instance counts (ascending) at which max_num_seqs is one of _seqs(space, y)

    def _most_y(self) -> Iterator[tuple[int, int]]:
        (ptp, ppp), (dtp, dpp) = self.prefill, self.decode
        for x in range(1, (self.budget_gpus - dtp * dpp) // (ptp * ppp) + 1):
            yield x, (self.budget_gpus - x * ptp * ppp) // (dtp * dpp)

    def counts(self) -> Iterator[tuple[int, int]]:
        for x, most in self._most_y():
            yield from ((x, y) for y in self.ys[: bisect.bisect_right(self.ys, most)])

    def size(self) -> int:
        return sum(bisect.bisect_right(self.ys, most) for _, most in self._most_y())

    def members(self) -> Iterator[DisaggConfig]:
        (ptp, ppp), (dtp, dpp) = self.prefill, self.decode
        for x, y in self.counts():
            yield DisaggConfig(
                self.profile,
                Side(ptp, ppp, x),
                Side(dtp, dpp, y),
                self.max_num_seqs,
                self.dtype,
                self.kv_cache_dtype,
            )


# The decode side's max_num_seqs is enumerated on powers of two up to 1024 (vLLM's default cap on
# 80 GiB+ GPUs, get_batch_defaults), not solved per deployment as the aggregated side's is
# (search/batch.py): the deployments are enumerated and bounded, and a grid keeps their count small.
DECODE_SEQS = tuple(2**k for k in range(11))


def _seqs(space: Space, y: int) -> set[int]:
    """The decode side's max_num_seqs values at y instances: the grid, capped by y's share of the
    clients (a cap above the share admits the same requests: one deployment, counted once)."""
    share = space.share(y)
    return {v if share is None else min(v, share) for v in DECODE_SEQS}


def _ys_by_seqs(space: Space, budget_gpus: int) -> dict[int, tuple[int, ...]]:
    at: dict[int, set[int]] = {}
    for y in range(1, budget_gpus + 1):
        for v in _seqs(space, y):
            at.setdefault(v, set()).add(y)
    return {v: tuple(sorted(ys)) for v, ys in sorted(at.items())}


def groups(space: Space, judge: Judge, *, sequence_tokens: int) -> Iterator[Group]:
    """Every group of disaggregated deployments whose two instance kinds run and fit on their own; the
    decode side's max_num_seqs takes the DECODE_SEQS values (capped by a client share) that its KV cache holds (more would be refused
    by the kv_cache constraint anyway)."""
    for arm in space.arms:
        ys_at = _ys_by_seqs(space, arm.budget_gpus)
        for dtype, kv in arm.dtypes:
            held = {  # requests of I + O tokens one instance's KV cache holds, for the layouts that run
                (tp, pp): cand.kv_cache_tokens // sequence_tokens
                for tp in arm.tps
                for pp in space.pps(arm, tp)
                if tp * pp < arm.budget_gpus and _usable(cand := judge(arm.profile, tp, pp, dtype, kv))
            }
            for pre in held:
                for dec, most_seqs in held.items():
                    for seqs, ys in ys_at.items():
                        if seqs <= most_seqs:
                            yield Group(arm.profile, dtype, kv, pre, dec, seqs, arm.budget_gpus, ys)


def configs(space: Space, judge: Judge, *, sequence_tokens: int) -> Iterator[DisaggConfig]:
    """Every disaggregated deployment of the space (every member of every group)."""
    for g in groups(space, judge, sequence_tokens=sequence_tokens):
        yield from g.members()


def score(c: DisaggConfig, ev: DisaggEvaluation, *, q: Question) -> ScoredConfig:
    """objective.score on the decode side (its engine rules, memory, KV cache, and the deployment's
    SLOs), then the prefill side's engine rules and memory and the placement of both."""
    d = c.decode
    decode_side = Config(c.profile, d.tp, d.pp, d.count, c.max_num_seqs, c.dtype, c.kv_cache_dtype)
    s = objective_score(decode_side, Evaluation(ev.decode, ev), q=q)  # type: ignore[arg-type]
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
    space: Space,
    q: Question,
    *,
    judge: Judge,
    price: Price,
    bound: Bound | None = None,
    group_bound: GroupBound | None = None,
    keep: int = KEEP,
    aggregated_top: ScoredConfig | None = None,
) -> tuple[list[ScoredConfig], int]:
    """The disaggregated deployments of the space, scored, and how many were left unsolved.

    With the bounds (upper bounds on tokens/USD that need no solve: one for a whole group, one for a
    deployment), groups and then deployments are taken best bound first, and one whose bound is below
    the `keep`-th best feasible result so far cannot enter the top `keep`, and one whose bound is also
    below the low end of the top's 80% interval (the top of this kind so far, or `aggregated_top` when
    that earns more) cannot tie with it either (search/rank.py), so it cannot win: it is counted, not
    solved. A Pareto search solves them all (one below on tokens/USD may be ahead on latency) when
    they are at most PARETO_SOLVE_ALL; beyond that its front holds the ones solved."""
    every = list(groups(space, judge, sequence_tokens=q.sequence_tokens))
    if (
        bound is None
        or group_bound is None
        or (q.pareto and sum(g.size() for g in every) <= PARETO_SOLVE_ALL)
    ):
        return [score(c, price(c), q=q) for g in every for c in g.members()], 0
    best: list[float] = []  # the top `keep` feasible tokens/USD so far, a min-heap
    out, skipped = [], 0
    top = aggregated_top  # the feasible result with the most tokens/USD so far, of either kind

    def beaten(b: float) -> bool:
        return len(best) == keep and b < best[0] and (top is None or b < top.output_tokens_per_usd_low)

    # groups of one pair of layouts, by max_num_seqs; the largest one's bound bounds them all (a decode
    # instance's rate S / (O · T(S)) grows with S), so a hopeless pair is skipped without a step time
    pairs: dict[tuple, list[Group]] = {}
    for g in every:
        pairs.setdefault((g.profile, g.dtype, g.kv_cache_dtype, g.prefill, g.decode), []).append(g)
    for pb, gs in sorted(((group_bound(gs[-1]), gs) for gs in pairs.values()), key=lambda t: -t[0]):
        if beaten(pb):
            skipped += sum(g.size() for g in gs)
            continue
        for gb, g in sorted(((group_bound(g), g) for g in gs), key=lambda t: -t[0]):
            if beaten(gb):
                skipped += g.size()
                continue
            for b, c in sorted(((bound(c), c) for c in g.members()), key=lambda t: -t[0]):
                if beaten(b):
                    skipped += 1
                    continue
                s = score(c, price(c), q=q)
                out.append(s)
                if s.feasible:
                    if top is None or s.output_tokens_per_usd > top.output_tokens_per_usd:
                        top = s
                    heapq.heappush(best, s.output_tokens_per_usd)
                    if len(best) > keep:
                        heapq.heappop(best)
    return out, skipped


def compare(aggregated: ScoredConfig | None, disaggregated: ScoredConfig | None, *, won: bool) -> str:
    """One line: which kind won the search (`won`: the disaggregated one), the plan against the most
    tokens/USD of the other kind (a kind can win with fewer inside the uncertainty, on latency:
    search/rank.py)."""
    if disaggregated is None:
        return "disaggregated prefill/decode: no deployment of it fits and meets the SLOs"
    if aggregated is None:
        return f"disaggregated prefill/decode wins: no aggregated configuration meets the SLOs; {disaggregated.label()}"
    ratio = disaggregated.output_tokens_per_usd / aggregated.output_tokens_per_usd
    d = disaggregated.disaggregated
    assert d is not None
    detail = (
        f"{disaggregated.label()}: {disaggregated.output_tokens_per_usd:,.0f} tok/$, TTFT "
        f"{disaggregated.ttft_ms:,.0f} ms (KV transfer {d.kv_transfer_ms:.1f} ms over {d.kv_fabric}), TPOT "
        f"{disaggregated.tpot_ms:.1f} ms, prefill busy {d.prefill_utilization:.0%}, balanced at "
        f"{d.balanced_ratio:.2f} prefill per decode instance"
    )
    verdict = "wins" if won else "loses"
    if won != (ratio > 1):  # more tokens/USD, inside the uncertainty: the tie went the other way
        verdict += " a tie on latency or GPUs"
    other = "the best aggregated configuration" if won else "the aggregated plan"
    return (
        f"disaggregated prefill/decode {verdict} ({ratio:.3f}x the tokens/USD of {other}, "
        f"{aggregated.output_tokens_per_usd:,.0f}): {detail}"
    )
