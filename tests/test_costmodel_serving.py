"""Serving estimates: every field for the issue's three models, and the closed-loop steady state."""

from __future__ import annotations

import pytest

from tpplan import api
from tpplan.errors import ConfigError
from tpplan.records import Layout
from tpplan.specs import Workload

FIELDS = (
    "ttft_ms",
    "tpot_ms",
    "output_tokens_per_s",
    "requests_per_s",
    "gpus",
    "usd_per_hour",
    "output_tokens_per_usd",
    "fits",
    "kv_cache_tokens",
    "max_concurrency",
    "breakdown",
)


def serve(
    model: str,
    tp: int,
    pp: int = 1,
    replicas: int = 1,
    isl: int = 1024,
    osl: int = 256,
    c: int = 32,
    dtype: str = "bf16",
    profile: str = "dgx-h100",
):
    w = Workload(input_tokens=isl, output_tokens=osl, concurrency=c, dtype=dtype)
    return api.estimate_serve(model, profile, layout=Layout(tp=tp, pp=pp, replicas=replicas), workload=w)


@pytest.mark.parametrize(
    ("model", "tp", "pp", "dtype"),
    [("llama-3.1-70b", 8, 1, "bf16"), ("mixtral-8x7b", 8, 1, "bf16"), ("deepseek-v3", 8, 2, "fp8")],
)
def test_every_field_and_the_breakdown(model, tp, pp, dtype):
    est = serve(model, tp, pp, dtype=dtype)
    data = est.model_dump(mode="json")
    for f in FIELDS:
        assert f in data
    assert est.fits and est.converged
    assert est.ttft_ms > 0 and est.tpot_ms > 0 and est.output_tokens_per_s > 0
    b = est.breakdown
    assert b.total_ms == pytest.approx(est.tpot_ms, rel=1e-3)
    assert b.weight_reads_ms > 0 and b.allreduce_ms > 0 and b.overhead_ms > 0
    assert est.gpus == tp * pp
    assert est.usd_per_hour == pytest.approx(est.gpus * 2.99)
    assert est.output_tokens_per_usd == pytest.approx(
        est.output_tokens_per_s * 3600 / est.usd_per_hour, rel=1e-3
    )
    assert est.max_concurrency == est.kv_cache_tokens // (1024 + 256)
    assert {"gemm_fraction", "hbm_fraction", "allreduce", "kv_cache_tokens"} <= set(est.provenance)


def test_deepseek_v3_needs_more_than_one_node():
    est = serve("deepseek-v3", 8, dtype="fp8")
    assert not est.fits and any("exceed" in r for r in map(str, est.reasons))
    assert serve("deepseek-v3", 8, pp=2, dtype="fp8").nodes == 2


def test_littles_law_holds_in_the_steady_state():
    est = serve("llama-3.1-70b", 8, isl=2048, osl=512, c=64)
    latency_s = (est.ttft_ms + (est.output_tokens - 1) * est.tpot_ms) / 1e3
    assert est.requests_per_s * latency_s == pytest.approx(64, rel=0.01)


def test_ttft_grows_with_concurrency_far_beyond_a_lone_prefill():
    ttft = [serve("llama-3.1-70b", 8, isl=4096, osl=256, c=c).ttft_ms for c in (1, 8, 32, 128)]
    assert ttft == sorted(ttft)
    assert ttft[-1] > 3 * ttft[0]
    tpot = [serve("llama-3.1-70b", 8, isl=4096, osl=256, c=c).tpot_ms for c in (1, 128)]
    assert tpot[1] > 2 * tpot[0]  # others' prefills share the decode steps


def test_requests_beyond_the_kv_cache_wait_in_the_queue():
    small = serve("qwen3-32b", 2, isl=4096, osl=1024, c=32)
    big = serve("qwen3-32b", 2, isl=4096, osl=1024, c=128)
    assert small.queue_wait_ms == 0
    assert big.resident_per_instance < 128 and big.queue_wait_ms > 10_000
    assert big.output_tokens_per_s == pytest.approx(
        big.resident_per_instance / small.resident_per_instance * small.output_tokens_per_s, rel=0.5
    )


def test_replicas_split_the_load_and_add_throughput():
    one = serve("llama-3.1-8b", 1, c=16)
    two = serve("llama-3.1-8b", 1, replicas=2, c=32)
    assert two.output_tokens_per_s == pytest.approx(2 * one.output_tokens_per_s, rel=1e-3)
    assert two.tpot_ms == pytest.approx(one.tpot_ms, rel=1e-3)


def test_fp8_on_a_gpu_without_fp8_is_a_config_error():
    with pytest.raises(ConfigError, match="FP8"):
        serve("llama-3.1-8b", 1, dtype="fp8", profile="dgx-a100-80g")


def test_tp_across_nodes_is_priced_over_the_network():
    est = serve("llama-3.1-70b", 16, c=64)
    assert est.tp_fabric == "network" and est.crosses_nvlink_domain
    assert est.breakdown.allreduce_ms > serve("llama-3.1-70b", 8, c=64).breakdown.allreduce_ms
