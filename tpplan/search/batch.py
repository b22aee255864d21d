"""The best integer max_num_seqs of one setup, solved rather than sampled.

A setup (profile, TP, PP, replicas, dtypes) fixes everything but how many sequences each replica runs
at once. Its range is 1 to what one replica's KV cache holds (space.seqs_upper). The closed-form
model has a shape along that range that a bisection can use:

- the engine rules, the memory fit and the placement do not depend on max_num_seqs at all;
- tokens/USD rises with it: each step's fixed part (reading the weights, launches, the scheduler) is
  shared by more sequences, and the price is the setup's GPUs whatever they run;
- TPOT rises with it (a bigger decode batch per step), and so does the KV cache use (the kv_cache
  constraint: no more sequences than the cache holds);
- TTFT rises with it when each replica runs full (more clients, more prompts queued ahead); under a
  fixed client load (`--concurrency`) it falls instead (fewer requests wait for a slot).

So the feasible values are those up to the largest one that meets the rising constraints, and the best
is that largest one when it also meets the others; no larger value is feasible and no smaller one
earns more. `solve` finds it by regula falsi with bisection steps, in a handful of evaluations. That the model really has
this shape is checked, not assumed: `every_integer` scores the whole range one value at a time, and
the bench (bench/bench_search.py) and tests/test_search_batch.py hold `solve` to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..records import ScoredConfig
from .objective import Evaluate, Evaluation, Question, score
from .space import Setup, Space

FIXED = ("budget", "engine", "placement", "memory", "kv_cache")  # the same at every value in range


@dataclass
class Solved:
    """A setup's best max_num_seqs (or, when none is feasible, the value that misses least)."""

    best: ScoredConfig
    evaluation: Evaluation
    upper: int  # the largest max_num_seqs in the setup's range
    probes: list[ScoredConfig] = field(default_factory=list)  # every value evaluated on the way


def _rising(s: ScoredConfig, q: Question) -> float:
    """The worst of the constraints that only get worse as max_num_seqs grows (<= 0: all met): the
    ones fixed along the range (a miss there is a miss everywhere), TPOT's SLO, and TTFT's when each
    replica runs full (not under a fixed client load). Without such an SLO: -1, met."""
    if any(s.violations.get(n, 0.0) > 0 for n in FIXED):
        return max(s.violations.get(n, 0.0) for n in FIXED)
    slos = [("slo_tpot", q.slo_tpot_ms), ("slo_ttft", None if q.concurrency else q.slo_ttft_ms)]
    return max((s.violations[n] for n, limit in slos if limit is not None), default=-1.0)


def held(ev: Evaluation, q: Question) -> int:
    """Requests of ISL+OSL tokens one replica's KV cache holds (as objective.constraints counts them)."""
    return ev.candidate.kv_cache_tokens // q.sequence_tokens


def solve(space: Space, setup: Setup, *, evaluate: Evaluate, q: Question, trial: int | None = None) -> Solved:
    """The setup at its best max_num_seqs, by bisection over 1..upper (see the module's docstring)."""
    probes: dict[int, tuple[ScoredConfig, Evaluation]] = {}

    def probe(n: int) -> tuple[ScoredConfig, Evaluation]:
        if n not in probes:
            ev = evaluate(setup.at(n))
            probes[n] = (score(setup.at(n), ev, q=q, trial=trial), ev)
        return probes[n]

    first, ev = probe(1)
    upper = space.seqs_upper(setup.replicas, held(ev, q))
    lo, g_lo = 1, _rising(first, q)
    if g_lo <= 0:  # lo meets the rising constraints; the answer is in lo..upper
        hi, g_hi = upper, _rising(probe(upper)[0], q)
        last = ""
        while g_hi > 0 and hi - lo > 1:
            # Regula falsi on the worst violation (TPOT grows about linearly with the batch), Illinois'
            # variant: when the same end moved twice running, the other end's value counts half, so
            # the next guess leaves a one-sided crawl. A handful of evaluations, not log2(upper).
            mid = lo + round((hi - lo) * g_lo / (g_lo - g_hi)) if g_lo < 0 else (lo + hi) // 2
            mid = min(max(mid, lo + 1), hi - 1)
            g = _rising(probe(mid)[0], q)
            side = "lo" if g <= 0 else "hi"
            if side == "lo":
                lo, g_lo = mid, g
                g_hi = g_hi / 2 if last == "lo" else g_hi
            else:
                hi, g_hi = mid, g
                g_lo = g_lo / 2 if last == "hi" else g_lo
            last = side
        best, ev = probe(hi if g_hi <= 0 else lo)
    else:
        best = first  # over a rising limit at one sequence: at every value
    return Solved(best, ev, upper, [s for s, _ in probes.values()])


def every_integer(space: Space, setup: Setup, *, evaluate: Evaluate, q: Question) -> list[ScoredConfig]:
    """The setup at every max_num_seqs of its range, one evaluation each: the ground truth `solve` is
    held to (the bench and the tests)."""
    ev = evaluate(setup.at(1))
    out = [score(setup.at(1), ev, q=q)]
    for n in range(2, space.seqs_upper(setup.replicas, held(ev, q)) + 1):
        out.append(score(setup.at(n), evaluate(setup.at(n)), q=q))
    return out
