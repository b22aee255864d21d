"""Kernel time by shape: the derived tables, their provenance, and what the step model takes from them."""

from __future__ import annotations

import json

import pytest

from tpplan import io, memory
from tpplan.costmodel import Params
from tpplan.costmodel.kernels import DATA, gpu_index, interpolate, kernel_tables, load_table
from tpplan.costmodel.work import stage_shape

TABLES = sorted(p.stem for p in DATA.glob("*.json") if p.stem != "gpus")


@pytest.fixture(scope="module")
def h100():
    return kernel_tables(io.load_profile("dgx-h100"))


def _tflops(k, m, n=4096, kk=4096, dtype="bf16"):
    return 2 * m * n * kk / (k.gemm_ms(m, n, k=kk, dtype=dtype) * 1e9)


def test_every_table_names_its_source_and_stays_small():
    assert {"h100_sxm", "h200_sxm", "a100_sxm", "b200_sxm", "gb200", "l40s"} <= set(TABLES)
    for name in TABLES:
        path = DATA / f"{name}.json"
        assert path.stat().st_size < 100_000
        src = json.loads(path.read_text())["source"]
        assert (src["package"], src["version"], src["license"]) == (
            "aiconfigurator-core",
            "0.12.0",
            "Apache-2.0",
        )
        assert src["derived_by"] == "scripts/derive_kernel_tables.py" and src["basis"] == "measured"
        assert src["files"] and not any("silicon_sample" in f for f in src["files"])


def test_every_mapped_gpu_has_a_table_and_borrowed_ones_say_why():
    for gpu, entry in gpu_index().items():
        assert entry["table"] in TABLES, gpu
        if "why" in entry:
            assert len(entry["why"]) > 20


def test_a_small_gemm_runs_far_below_a_large_one(h100):
    assert _tflops(h100, 1) < 0.01 * _tflops(h100, 4096)
    assert _tflops(h100, 8) < 0.05 * 989  # an 8-token GEMM: a few percent of the rated peak
    assert 0.7 * 989 < _tflops(h100, 4096) < 989  # a large one: most of it, never more


def test_achieved_flops_grow_with_tokens_and_time_never_shrinks(h100):
    ms = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    rates = [_tflops(h100, m, 8192, 8192) for m in ms]
    times = [h100.gemm_ms(m, 8192, k=8192, dtype="bf16") for m in ms]
    # rising until the GEMM is compute-bound (m ~ 512 on H100), then a plateau within measurement noise
    assert rates[:10] == sorted(rates[:10])
    assert min(rates[9:]) > 0.85 * max(rates)
    assert all(b >= a * 0.999 for a, b in zip(times, times[1:], strict=False))


def test_decode_attention_bandwidth_grows_with_batch_and_context_up_to_the_rated_peak(h100):
    def gbps(b, ctx, kv=8):
        nbytes = b * ctx * kv * 128 * 2 * 2
        return nbytes / (h100.decode_attention_ms(nbytes, b, context=ctx, kv_heads=kv, kv="bf16") * 1e6)

    assert gbps(1, 256) < 0.1 * 3350  # launch-bound
    assert gbps(1, 256) < gbps(64, 256) < gbps(64, 2048) <= 3350


def test_prefill_attention_is_slow_for_short_prompts(h100):
    def tflops(length, heads=32):
        flops = 2 * heads * 128 * length**2
        return flops / (h100.prefill_attention_ms(flops, heads, length=length) * 1e9)

    assert tflops(128) < 0.1 * tflops(8192)
    assert tflops(8192) < 989


def test_interpolation_is_exact_on_the_grid_and_between_its_neighbours_off_it():
    axes, values = [[1, 4, 16]], [1.0, 2.0, 8.0]
    assert interpolate(axes, values, point=(4,)) == pytest.approx(2.0)
    assert interpolate(axes, values, point=(2,)) == pytest.approx(2**0.5)  # log-log midpoint
    assert interpolate(axes, values, point=(100,)) == pytest.approx(8.0)  # held at the edge


def test_profiles_label_measured_and_scaled_tables():
    own = kernel_tables(io.load_profile("hgx-h200"))
    assert own.basis == "measured" and "H200" in own.source
    a10g = kernel_tables(io.load_profile("a10g-4x-pcie"))
    assert a10g.basis == "derived" and "scaled from the l40s table" in a10g.source
    l40s = kernel_tables(io.load_profile("l40s-8x-pcie"))
    # the A10G is rated at 0.69x the L40S's bandwidth: a weight-bound GEMM takes 1/0.69x as long
    assert a10g.gemm_ms(1, 8192, k=8192, dtype="bf16") == pytest.approx(
        l40s.gemm_ms(1, 8192, k=8192, dtype="bf16") * 864 / 600
    )
    assert kernel_tables(io.load_profile("cpu-local")) is None


def test_the_estimate_says_where_kernel_times_came_from():
    params = Params(io.load_profile("dgx-h100"))
    assert params.kernels is not None and "aiconfigurator-core 0.12.0" in params.kernels.source


@pytest.mark.parametrize(
    "name,tp", [("llama-3.1-70b", 8), ("qwen3-32b", 2), ("mixtral-8x7b", 4), ("deepseek-v3", 8)]
)
def test_gemm_shapes_add_up_to_the_parameters_they_stand_for(name, tp):
    model = io.load_model(name)
    s = stage_shape(model, tp, layers=range(model.num_layers), last=True, kv_dtype="bf16")
    if s.dense_layers:
        assert sum(n * k for n, k in s.dense_gemms) == pytest.approx(s.dense_params, rel=0.01)
    if s.moe_layers:
        assert sum(n * k for n, k in s.moe_linear_gemms) == pytest.approx(s.moe_linear_params, rel=0.01)
        assert sum(n * k for n, k in s.expert_gemms) == pytest.approx(s.expert_params, rel=0.01)
    assert s.lm_head_gemm[0] * s.lm_head_gemm[1] == s.lm_head_params
    assert s.q_heads == memory.heads_on_rank(model.num_attention_heads, tp)


def test_a_table_loads_with_its_grid_shape():
    t = load_table("h100_sxm")
    g = t["gemm"]["bf16"]
    assert len(g["tflops"]) == len(g["m"]) and len(g["tflops"][0]) == len(g["n"])
    assert all(v is not None and v > 0 for plane in g["tflops"] for row in plane for v in row)
