"""The decision-regret measure `make bench` prints (bench/bench_regret.py), on hand-made grids."""

from __future__ import annotations

import pytest

from bench.bench_regret import TPOT_QUANTILES, TTFT_SLOS_MS, Judged, _tokens_per_s_per_gpu, regret
from tpplan.costmodel.sources import ServingPoint


def _point(concurrency: int, *, ttft_ms: float, tpot_ms: float) -> ServingPoint:
    return ServingPoint(
        line=0,
        engine="vllm",
        model="Qwen/Qwen3-32B",
        dtype="bf16",
        isl=1024,
        osl=128,
        concurrency=concurrency,
        tp=8,
        pp=1,
        ttft_ms=ttft_ms,
        tpot_ms=tpot_ms,
    )


# measured: more clients, more throughput, longer latencies; five TPOTs so the 30/50/70th percentile
# limits differ (8 -> index 1: 10 ms, 2: 12 ms, 3: 20 ms); TTFT under every TTFT limit
GRID = [
    _point(4, ttft_ms=90, tpot_ms=8),
    _point(8, ttft_ms=100, tpot_ms=10),
    _point(16, ttft_ms=120, tpot_ms=12),
    _point(32, ttft_ms=150, tpot_ms=20),
    _point(64, ttft_ms=300, tpot_ms=35),
]
QUESTIONS = len(TPOT_QUANTILES) * len(TTFT_SLOS_MS)


def _judged(scale_ttft: float = 1.0, scale_tpot: float = 1.0) -> list[Judged]:
    return [
        Judged(p, tpot_ms=p.tpot_ms * scale_tpot, ttft_ms=p.ttft_ms * scale_ttft, fold=i % 2)
        for i, p in enumerate(GRID)
    ]


def _throughput(p: ServingPoint) -> float:
    return _tokens_per_s_per_gpu(p, p.ttft_ms, p.tpot_ms)


def test_exact_predictions_lose_nothing():
    o = regret(_judged(), high_end=False)
    assert len(o.regrets) == QUESTIONS and o.missed == o.no_pick == 0
    assert o.regrets == pytest.approx([0.0] * QUESTIONS)


def test_optimistic_latencies_pick_what_misses_the_slo():
    # TPOT predicted at 0.55x: under the 10 ms limit the 12 ms point looks like 6.6 ms and is picked,
    # under 12 ms the 20 ms one (11 ms), under 20 ms the 35 ms one (19.25 ms): every pick misses
    o = regret(_judged(scale_tpot=0.55), high_end=False)
    assert o.missed == QUESTIONS and o.regrets == [1.0] * QUESTIONS


def test_pessimistic_latencies_give_up_exactly_the_throughput_between_the_points():
    # TPOT predicted at 1.25x (10, 12.5, 15, 25, 43.75 ms): under 10 ms the 4-client point is picked
    # (8 clients were best), under 12 ms still it (16 were best), under 20 ms 16 clients (32 were)
    o = regret(_judged(scale_tpot=1.25), high_end=False)
    t = [_throughput(p) for p in GRID]
    per_limit = [1 - t[0] / t[1], 1 - t[0] / t[2], 1 - t[2] / t[3]]  # limits 10, 12, 20 ms
    expected = [r for r in per_limit for _ in TTFT_SLOS_MS]
    assert o.missed == o.no_pick == 0 and o.regrets == pytest.approx(expected)


def test_a_limit_nothing_is_predicted_to_meet_is_counted_as_no_pick():
    # TPOT predicted at 2x (16 ms and up): nothing is predicted under the 10 and 12 ms limits
    o = regret(_judged(scale_tpot=2.0), high_end=False)
    assert o.no_pick == 2 * len(TTFT_SLOS_MS) and o.missed == 0 and o.regrets.count(1.0) == o.no_pick


def test_the_high_end_rule_multiplies_by_the_other_folds_spread():
    # residuals of 1.5x on TPOT everywhere: the high end predicts every point 1.5x slower than the
    # point estimate, so it picks like the pessimistic grid, while the point estimate misses nothing
    skewed = [Judged(p, tpot_ms=p.tpot_ms / 1.5, ttft_ms=p.ttft_ms, fold=i % 2) for i, p in enumerate(GRID)]
    point = regret(skewed, high_end=False)  # predictions 1.5x optimistic: picks miss
    high = regret(skewed, high_end=True)  # x the p90 ratio 1.5: exact again
    assert point.missed > 0 and high.missed == high.no_pick == 0
    assert high.regrets == pytest.approx([0.0] * QUESTIONS)
