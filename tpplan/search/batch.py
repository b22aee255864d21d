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
earns more. `solve` finds it by bisection in about log2(range) evaluations. That the model really has
this shape is checked, not assumed: `every_integer` scores the whole range one value at a time, and
the bench (bench/bench_search.py) and tests/test_search_batch.py hold `solve` to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..records import ScoredConfig
from .objective import Evaluate, Evaluation, Question, score
from .space import Setup, Space

RISING = ("budget", "engine", "placement", "memory", "kv_cache", "slo_tpot")


@dataclass
class Solved:
    """A setup's best max_num_seqs (or, when none is feasible, the value that misses least)."""

    best: ScoredConfig
    evaluation: Evaluation
    upper: int  # the largest max_num_seqs in the setup's range
    probes: list[ScoredConfig] = field(default_factory=list)  # every value evaluated on the way


def _rising_ok(s: ScoredConfig, q: Question) -> bool:
    """The constraints that only get worse as max_num_seqs grows are met (TTFT is one of them when
    each replica runs full, not under a fixed client load)."""
    names = RISING if q.concurrency else (*RISING, "slo_ttft")
    return all(s.violations.get(n, 0.0) <= 0 for n in names)


def held(ev: Evaluation, q: Question) -> int:
    """Requests of ISL+OSL tokens one replica's KV cache holds (as objective.constraints counts them)."""
    return ev.candidate.kv_cache_tokens // q.sequence_tokens


def solve(space: Space, setup: Setup, evaluate: Evaluate, q: Question, trial: int | None = None) -> Solved:
    """The setup at its best max_num_seqs, by bisection over 1..upper (see the module's docstring)."""
    probes: dict[int, tuple[ScoredConfig, Evaluation]] = {}

    def probe(n: int) -> tuple[ScoredConfig, Evaluation]:
        if n not in probes:
            ev = evaluate(setup.at(n))
            probes[n] = (score(setup.at(n), ev, q, trial), ev)
        return probes[n]

    first, ev = probe(1)
    upper = space.seqs_upper(setup.replicas, held(ev, q))
    if _rising_ok(first, q):
        lo, hi = 1, upper  # lo meets the rising constraints; the answer is in lo..hi
        if not _rising_ok(probe(hi)[0], q):
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if _rising_ok(probe(mid)[0], q) else (lo, mid)
            hi = lo
        best, ev = probe(hi)
    else:
        best = first  # over a rising limit at one sequence: at every value
    return Solved(best, ev, upper, [s for s, _ in probes.values()])


def every_integer(space: Space, setup: Setup, evaluate: Evaluate, q: Question) -> list[ScoredConfig]:
    """The setup at every max_num_seqs of its range, one evaluation each: the ground truth `solve` is
    held to (the bench and the tests)."""
    ev = evaluate(setup.at(1))
    out = [score(setup.at(1), ev, q)]
    for n in range(2, space.seqs_upper(setup.replicas, held(ev, q)) + 1):
        out.append(score(setup.at(n), evaluate(setup.at(n)), q))
    return out
