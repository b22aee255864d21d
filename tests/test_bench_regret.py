"""The decision-regret measure `make bench` prints (bench/bench_regret.py): exact on hand-made grids."""

from __future__ import annotations

import pytest

from bench.bench_regret import Judged, regret
from tpplan.costmodel.sources import ServingPoint


def _point(tp: int, concurrency: int, *, ttft_ms: float, tpot_ms: float) -> ServingPoint:
    return ServingPoint(
        line=0,
        engine="vllm",
        model="Qwen/Qwen3-32B",
        dtype="bf16",
        isl=1024,
        osl=128,
        concurrency=concurrency,
        tp=tp,
        pp=1,
        ttft_ms=ttft_ms,
        tpot_ms=tpot_ms,
    )


GRID = [  # measured: more clients, more throughput, longer latencies
    _point(8, 8, ttft_ms=100, tpot_ms=8),
    _point(8, 32, ttft_ms=150, tpot_ms=12),
    _point(8, 128, ttft_ms=400, tpot_ms=30),
]


def _judged(scale_ttft: float = 1.0, scale_tpot: float = 1.0) -> list[Judged]:
    return [
        Judged(p, tpot_ms=p.tpot_ms * scale_tpot, ttft_ms=p.ttft_ms * scale_ttft, fold=i % 2)
        for i, p in enumerate(GRID)
    ]


def test_exact_predictions_lose_nothing():
    regrets, missed = regret(_judged(), high_end=False)
    assert missed == 0 and regrets and all(r == pytest.approx(0.0) for r in regrets)


def test_optimistic_latencies_pick_what_misses_the_slo():
    # TPOT predicted at a third of what it measures: under a TPOT limit between the points, the busiest
    # point looks feasible, is picked, and misses the limit when measured: a full loss.
    regrets, missed = regret(_judged(scale_tpot=0.35), high_end=False)
    assert missed > 0 and 1.0 in regrets


def test_pessimistic_latencies_give_up_throughput_without_missing():
    regrets, missed = regret(_judged(scale_tpot=1.3), high_end=False)
    assert missed == 0 and max(regrets) > 0.1
