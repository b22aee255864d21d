"""Rank samples → Measurement: per-call all-reduce latency, step per instance, imbalance, replicas."""

from __future__ import annotations

import statistics

import pytest

from tests.sweep_helpers import small_settings
from tpplan.records import Measurement
from tpplan.sweep.cases import Case, SweepSettings
from tpplan.sweep.collect import advice, measurement


def settings(**kw) -> SweepSettings:
    return small_settings(**({"tokens": 64, "batch": 2, "layers": 2} | kw))


def case(tp=2, pp=1, replicas=1, mode="even", dtype="fp32") -> Case:
    return Case(
        key=f"k{tp}{pp}{replicas}",
        tp=tp,
        pp=pp,
        replicas=replicas,
        dtype=dtype,
        heads_mode=mode,
        engines_accepting=["vllm"],
    )


def sample(rank, step, ar, cpu, replica=0, stage=0, tp_rank=None, heads=4, alone=None):
    return {
        "rank": rank,
        "replica": replica,
        "stage": stage,
        "tp_rank": rank if tp_rank is None else tp_rank,
        "heads": heads,
        "kv_heads": 2,
        "ar_bytes": 64 * 2 * 512 * 4,
        "step_ms": step,
        "ar_ms": ar,
        "p2p_ms": [0.0] * len(step),
        "cpu_ms": cpu,
        "alone_step_ms": alone,
        "gpu_util": None,
    }


DRIFT = {
    "dtype": "fp32",
    "reference": "TP=1",
    "max_abs": 1e-6,
    "max_rel": 1e-6,
    "hidden_max_abs": 1e-6,
    "allclose": True,
}


def test_allreduce_latency_is_the_fastest_rank_per_call():
    # rank 0 waits 3 ms in its first call for rank 1, which arrives late and spends 1 ms
    s0 = sample(0, [10.0, 10.0], [[3.0, 1.0], [1.0, 1.0]], [5.0, 5.0])
    s1 = sample(1, [11.0, 10.0], [[1.0, 1.0], [1.0, 2.0]], [7.0, 7.0])
    m = measurement(
        settings(), case(), samples=[s1, s0], drift=DRIFT, ranks_per_core=1.0, microbatches=1, notes=[]
    )
    ar = m.allreduce
    assert ar.latency_us.p50 == pytest.approx(1000.0)
    assert ar.count_per_step == 2 and ar.group_size == 2 and ar.bytes == 64 * 2 * 512 * 4
    assert ar.busbw_gbps == pytest.approx(ar.algbw_gbps)  # 2(n-1)/n = 1 at n = 2
    assert m.step_ms.p50 == pytest.approx(10.5)  # per iteration the slowest rank: 11, 10
    assert ar.share_of_step == pytest.approx(2 * 1.0 / 10.5)
    # per rank: compute = step - time in collectives
    assert m.ranks[0].compute_ms == pytest.approx(statistics.median([10 - 4, 10 - 2]))
    assert m.heads_per_rank == [4, 4] and m.status == "ok" and m.drift.advice == []


def test_imbalance_uses_cpu_time_when_ranks_oversubscribe_cores():
    s0 = sample(0, [10.0], [[1.0]], [5.0], heads=5)
    s1 = sample(1, [10.0], [[1.0]], [4.0], heads=4)
    m = measurement(
        settings(),
        case(mode="uneven"),
        samples=[s0, s1],
        drift=DRIFT,
        ranks_per_core=2.0,
        microbatches=1,
        notes=[],
    )
    assert not m.representative and any("not representative" in n for n in m.notes)
    assert m.imbalance_pct == pytest.approx(20.0) and m.busy_spread_ms == pytest.approx(1.0)
    fair = measurement(
        settings(),
        case(mode="uneven"),
        samples=[s0, s1],
        drift=DRIFT,
        ranks_per_core=1.0,
        microbatches=1,
        notes=[],
    )
    assert fair.representative and fair.imbalance_pct == pytest.approx(0.0)  # equal wall compute


def test_replicas_report_aggregate_beside_r_times_one_alone():
    s = settings(layers=1)  # tiny has 4 layers: figures scale by depth x4
    a = sample(0, [10.0, 10.0], [[], []], [1.0, 1.0], replica=0, tp_rank=0, alone=[8.0, 8.0])
    b = sample(1, [10.0, 10.0], [[], []], [1.0, 1.0], replica=1, tp_rank=0)
    m = measurement(
        s, case(tp=1, replicas=2), samples=[a, b], drift=DRIFT, ranks_per_core=1.0, microbatches=1, notes=[]
    )
    one = 64 * 2 / (10.0 * 4 / 1e3)
    assert m.tokens_per_s == pytest.approx(2 * one)
    assert m.tokens_per_s_alone == pytest.approx(64 * 2 / (8.0 * 4 / 1e3))
    assert m.replica_scaling == pytest.approx(0.8)
    assert m.step_ms_full_depth == pytest.approx(40.0) and m.allreduce is None


def test_failing_drift_gets_the_seeds_remedies():
    bad = DRIFT | {"allclose": False, "dtype": "fp16"}
    m = measurement(
        settings(),
        case(dtype="fp16"),
        samples=[sample(0, [1.0], [[0.1]], [1.0]), sample(1, [1.0], [[0.1]], [1.0])],
        drift=bad,
        ranks_per_core=1.0,
        microbatches=1,
        notes=[],
    )
    assert m.drift.advice == advice("fp16")
    assert any("bf16" in a for a in m.drift.advice) and any("TP=1" in a for a in m.drift.advice)
    assert not any("bf16" in a for a in advice("bf16"))


def test_drift_keeps_its_tolerance_ratio_and_an_older_line_without_one_still_reads():
    two = [sample(0, [1.0], [[0.1]], [1.0]), sample(1, [1.0], [[0.1]], [1.0])]
    kw = dict(ranks_per_core=1.0, microbatches=1, notes=[])
    m = measurement(settings(), case(), samples=two, drift=DRIFT | {"tolerance_ratio": 0.25}, **kw)
    assert m.drift.tolerance_ratio == 0.25
    line = measurement(settings(), case(), samples=two, drift=DRIFT, **kw).model_dump(mode="json")
    del line["drift"]["tolerance_ratio"]  # as results.jsonl lines were written before the field
    assert Measurement.model_validate(line).drift.tolerance_ratio is None


def test_a_results_line_reads_back_as_the_same_record():
    m = measurement(
        settings(),
        case(),
        samples=[sample(0, [1.0], [[0.1]], [1.0]), sample(1, [1.0], [[0.1]], [1.0])],
        drift=DRIFT,
        ranks_per_core=1.0,
        microbatches=1,
        notes=["n"],
    )
    line = m.model_dump_json()
    assert '"world_size":2' in line
    assert Measurement.model_validate_json(line) == m
