"""The per-step model: what bounds a decode step, MoE and MLA work, pipeline rounds."""

from __future__ import annotations

import pytest

from tpplan import io, memory
from tpplan.costmodel import Params
from tpplan.costmodel.step import Instance, step_cost
from tpplan.costmodel.work import Batch, stage_shape, stage_work


def _inst(model, tp=8, pp=1, engine="vllm", kv="bf16", fabric="nvlink"):
    layers = tuple(memory.pp_split(model.num_layers, pp))
    return Instance(model, tp, layers, engine, kv, fabric if tp > 1 else "none", "nvlink")


def decode(d: float, ctx: float = 1024) -> Batch:
    return Batch(d, ctx, 0.0, 0.0, d)


@pytest.fixture(scope="module")
def h100():
    return Params(io.load_profile("dgx-h100"))


def test_small_batch_decode_is_bound_by_weight_reads_allreduce_and_overhead(h100):
    model = io.load_model("llama-3.1-70b")
    cost = step_cost(_inst(model), h100, batch=decode(8))
    assert cost.parts["compute"] == 0
    # the H100 kernel tables stream a TP8 shard's GEMMs at 8 tokens at ~75-80% of rated bandwidth
    w_ms = memory.weight_bytes_per_stage(model, 8, [80])[0] / 3350e6
    assert w_ms < cost.parts["weight_reads"] < w_ms / 0.7
    assert cost.allreduce_count == 160  # two per layer
    assert 3 < cost.allreduce_us_each < 20  # latency-bound: tens of KB per all-reduce
    assert cost.time_ms == pytest.approx(sum(cost.parts.values()))


def test_prefill_chunks_are_compute_bound(h100):
    model = io.load_model("llama-3.1-70b")
    cost = step_cost(_inst(model), h100, batch=Batch(0, 0, 8192, 4096, 1))
    assert cost.parts["compute"] > 5 * cost.parts["weight_reads"]


def test_fp8_weights_cut_the_weight_reads_but_not_by_half(h100):
    model = io.load_model("llama-3.1-70b")
    bf16 = step_cost(_inst(model), h100, batch=decode(4)).parts["weight_reads"]
    fp8 = step_cost(_inst(model.model_copy(update={"dtype": "fp8"})), h100, batch=decode(4)).parts[
        "weight_reads"
    ]
    # half the bytes, but vLLM's fp8 GEMMs at 4 tokens reach less of the bandwidth than bf16 ones
    # (H100 kernel table: ~1.2-2.6 TB/s against 2.2-2.7)
    assert 0.5 * bf16 < fp8 < 0.8 * bf16


def test_moe_reads_the_experts_its_tokens_touch_and_computes_only_the_active_ones():
    model = io.load_model("mixtral-8x7b")
    shape = stage_shape(model, 4, layers=range(model.num_layers), last=True, kv_dtype="bf16")
    one = stage_work(shape, decode(1))
    many = stage_work(shape, decode(256))
    experts = {w.name: w for w in one.ops}["experts"]
    # one token reads 2 of 8 experts; 256 tokens touch all 8
    assert {w.name: w for w in many.ops}["experts"].bytes == pytest.approx(4 * experts.bytes, rel=0.01)
    active = memory.active_params(model) / memory.total_params(model)
    assert 0.2 < active < 0.35  # 12.9B of 46.7B
    assert experts.flops == pytest.approx(2 * 2 * shape.expert_params * model.num_layers)


def test_mla_keeps_one_latent_per_token_on_every_rank():
    model = io.load_model("deepseek-v3")
    kv = [
        stage_shape(model, tp, layers=range(3), last=True, kv_dtype="bf16").kv_bytes_per_token
        for tp in (1, 8, 16)
    ]
    assert kv == [576 * 2] * 3  # kv_lora_rank 512 + rope 64, bf16, per layer
    gqa = io.load_model("llama-3.1-70b")
    kv_gqa = [
        stage_shape(gqa, tp, layers=range(3), last=True, kv_dtype="bf16").kv_bytes_per_token for tp in (1, 8)
    ]
    assert kv_gqa[0] == 8 * kv_gqa[1]


def test_pipeline_round_adds_p2p_and_every_stage_reads_its_weights_per_micro_batch(h100):
    model = io.load_model("llama-3.1-70b")
    flat = step_cost(_inst(model, tp=8), h100, batch=decode(64))
    piped = step_cost(_inst(model, tp=4, pp=2), h100, batch=decode(64))
    assert piped.parts["p2p"] > 0
    assert piped.time_ms == pytest.approx(sum(piped.parts.values()))
    # each GPU holds 1/8 of the weights either way, but with PP=2 every round runs two micro-batches,
    # each reading the stage's weights again: twice the bytes per generated token (a little under twice
    # the time: TP4's matrices are twice TP8's and stream closer to the rated bandwidth)
    assert 1.7 * flat.parts["weight_reads"] < piped.parts["weight_reads"] < 2 * flat.parts["weight_reads"]
