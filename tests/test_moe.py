"""Expert parallelism and data-parallel attention: rules, memory, cost, search space, emit."""

from __future__ import annotations

import json

import pytest
from emit_helpers import argv_of, engine_flags, make_plan

from tpplan import candidates, engines, io, memory, moe_rules
from tpplan.costmodel import Params
from tpplan.costmodel.collectives import alltoall_time
from tpplan.costmodel.step import Instance, stage_cost
from tpplan.costmodel.work import Batch, stage_shape, stage_work
from tpplan.emit import emit, render
from tpplan.errors import LayoutError
from tpplan.records import Layout
from tpplan.search.space import Arm, Space
from tpplan.specs.hf import spec_fields_from_hf

DSV3, MIXTRAL, LLAMA = (
    io.load_model("deepseek-v3"),
    io.load_model("mixtral-8x7b"),
    io.load_model("llama-3.1-70b"),
)
H200, H100 = io.load_profile("hgx-h200"), io.load_profile("dgx-h100")


def texts(reasons) -> str:
    return " | ".join(r.text for r in reasons)


# ---- rules ---------------------------------------------------------------------------------------
def test_each_engine_accepts_only_its_own_expert_layouts():
    assert moe_rules.modes("vllm", MIXTRAL, tp=8) == ((1, 1), (8, 1), (8, 8), (1, 8))
    assert moe_rules.modes("sglang", DSV3, tp=8) == ((1, 1), (8, 1), (8, 8), (1, 8))
    assert moe_rules.modes("megatron", MIXTRAL, tp=8) == ((1, 1), (8, 1))  # one model copy: no DP attention
    assert moe_rules.modes("vllm", LLAMA, tp=8) == ((1, 1),)  # dense: no such dimension
    assert moe_rules.modes("vllm", MIXTRAL, tp=1) == ((1, 1),)
    # vLLM's EP group is all of TP × DP: EP over half the GPUs cannot be asked for
    assert "must be 1 or tp" in texts(engines.check("vllm", MIXTRAL, tp=8, pp=1, ep=4).reasons)
    assert engines.check("sglang", MIXTRAL, tp=8, pp=1, ep=4).ok
    # Megatron: num_experts % EP (arguments.py:1656-1658); 8 experts over 16 ranks
    v = engines.check("megatron", MIXTRAL, tp=16, pp=1, ep=16)
    assert "num_experts (8) is not divisible by ep (16)" in texts(v.reasons)
    assert v.reasons[-1].source == "Megatron-LM: arguments.py:1656-1658"
    assert "data-parallel attention" in texts(engines.check("megatron", DSV3, tp=8, pp=1, dp=8).reasons)
    assert "dense" in texts(engines.check("vllm", LLAMA, tp=8, pp=1, ep=8).reasons)


def test_layout_degrees_must_divide_tp_and_default_to_plain_tp():
    assert Layout(tp=8).label() == "TP8×PP1×R1"  # today's plans unchanged
    assert Layout(tp=8, ep=8, dp_attention=4).label() == "TP8×PP1×R1 EP8 DPA4"
    with pytest.raises(ValueError, match="dp_attention"):
        Layout(tp=8, dp_attention=3)
    assert Layout.model_validate_json(Layout(tp=4, ep=4).model_dump_json()).ep == 4


# ---- memory --------------------------------------------------------------------------------------
def test_dp_attention_replicates_attention_and_splits_the_mla_cache():
    plain = candidates.judge(
        DSV3, H200, layout=Layout(tp=8), engine="sglang", budget_gpus=8, max_model_len=8192
    )
    dpa = candidates.judge(
        DSV3,
        H200,
        layout=Layout(tp=8, ep=8, dp_attention=8),
        engine="sglang",
        budget_gpus=8,
        max_model_len=8192,
    )
    # each rank holds the whole attention (TP 1) instead of an eighth of it: exactly that many more bytes
    extra = (memory.attention_params_per_rank(DSV3, 1) - memory.attention_params_per_rank(DSV3, 8)) * 61
    assert dpa.weights_gib_per_gpu - plain.weights_gib_per_gpu == pytest.approx(extra / memory.GIB, abs=2e-3)
    # the MLA latent is no longer copied on all 8 ranks: each group caches its own requests
    assert dpa.kv_cache_tokens > 5 * plain.kv_cache_tokens
    assert dpa.heads_per_rank == [128] and plain.heads_per_rank == [16] * 8


def test_expert_parallelism_moves_experts_not_bytes():
    tp = memory.weight_bytes_per_stage(MIXTRAL, 8, [32])
    ep = candidates.judge(
        MIXTRAL, H100, layout=Layout(tp=8, ep=8), engine="vllm", budget_gpus=8, max_model_len=8192
    )
    assert ep.weights_gib_per_gpu == pytest.approx(tp[0] / memory.GIB, abs=1e-3)


# ---- cost ----------------------------------------------------------------------------------------
def test_alltoall_is_priced_by_the_fabric_the_ep_group_spans():
    params = Params(H100)
    nvlink, _ = alltoall_time(params, 64e6, ranks=8, fabric="nvlink")
    network, why = alltoall_time(params, 64e6, ranks=8, fabric="network")
    assert 0 < nvlink < network
    assert why.basis == "assumed"
    assert alltoall_time(params, 64e6, ranks=1, fabric="nvlink")[0] == 0.0


def test_ep_with_dp_attention_dispatches_and_combines_each_moe_layer():
    shape = stage_shape(DSV3, 8, layers=range(61), last=True, kv_dtype="bf16", ep=8, dp=8)
    work = stage_work(shape, Batch(256, 2048, 0, 0, 256))
    kinds = {(c.kind, c.ranks): c for c in work.collectives}
    assert kinds[("alltoall", 8)].count == 2 * 58  # 58 MoE layers: dispatch + combine
    assert kinds[("alltoall", 8)].bytes == 256 / 8 * 8 * 7168 * 2  # this group's tokens × top-8 × hidden
    assert kinds[("allreduce", 8)].count == 3  # the dense layers gather and scatter instead
    assert work.allreduce_count == 0
    # the expert GEMMs: the same FLOPs as TP-sharded experts, on whole experts (n = 2 × 2048)
    tp_work = stage_work(
        stage_shape(DSV3, 8, layers=range(61), last=True, kv_dtype="bf16"), Batch(256, 2048, 0, 0, 256)
    )
    ep_op = next(o for o in work.ops if o.name == "experts")
    tp_op = next(o for o in tp_work.ops if o.name == "experts")
    assert ep_op.flops == pytest.approx(tp_op.flops)
    assert ep_op.gemms[0][0] == tp_op.gemms[0][0]  # the tokens each touched expert gets
    for op, s in (
        (ep_op, shape),
        (tp_op, stage_shape(DSV3, 8, layers=range(61), last=True, kv_dtype="bf16")),
    ):
        # one grouped GEMM per matrix and layer over the local experts, reading exactly their bytes
        assert sum(n * k * count for _, n, k, count in op.gemms) == pytest.approx(op.bytes / s.weight_bytes)
    assert ep_op.gemms[0][1] == 2 * 2048 * round(ep_op.bytes / 58 / shape.expert_params)  # whole experts
    assert ep_op.gemms[0][3] == pytest.approx(58, rel=0.05)  # about one launch per layer
    assert tp_op.gemms[0][3] == pytest.approx(58, rel=0.05)  # not one per expert (251 touched)
    # attention works on one eighth of the decodes
    assert next(o for o in work.ops if o.name == "attention").shape[0] == 32


def test_an_ep_group_across_the_network_pays_for_it():
    fast = Instance(DSV3, 8, (61,), "sglang", "bf16", "nvlink", "none", ep=8, dp=8)
    slow = Instance(DSV3, 8, (61,), "sglang", "bf16", "network", "none", ep=8, dp=8)
    batch = Batch(512, 2048, 0, 0, 512)
    params = Params(H200)
    assert (
        stage_cost(slow, params, stage=0, batch=batch).parts["allreduce"]
        > 2 * stage_cost(fast, params, stage=0, batch=batch).parts["allreduce"]
    )


# ---- search space ----------------------------------------------------------------------------------
def test_only_moe_models_get_the_expert_dimension():
    def space(model, engine):
        tps = (1, 2, 4, 8)
        modes = tuple(moe_rules.modes(engine, model, tp=t) for t in tps)
        return Space((Arm("dgx-h100", 8, tps, 8, (("bf16", "bf16"),), modes),), None)

    dense, moe, meg = space(LLAMA, "vllm"), space(MIXTRAL, "vllm"), space(MIXTRAL, "megatron")
    assert "moe_index" not in dense.dims and moe.dims["moe_index"] == (0, 3)
    keys = [c.key for c in moe.setups()]
    assert len(keys) == len(set(keys)) and any("|ep8|dpa8" in k for k in keys)
    assert all("|ep" not in c.key for c in dense.setups())  # a dense model's keys are as before
    assert moe.size - dense.size == 3 * (dense.size - sum(1 for c in dense.setups() if c.tp == 1))
    assert not any(c.dp_attention > 1 for c in meg.setups())
    draw = {
        "profile": "dgx-h100",
        "tp_index": 0,
        "pp_log2": 0,
        "dtype_index": 0,
        "moe_index": 2,
    }
    assert moe.decode(draw)[0] is None  # TP=1 has only plain TP


# ---- emit ----------------------------------------------------------------------------------------
def moe_plan(engine: str, model: str = "mixtral-8x7b", **layout) -> object:
    plan = make_plan(
        model, "hgx-h200" if model == "deepseek-v3" else "dgx-h100", engine=engine, max_num_seqs=256
    )
    return plan.model_copy(update={"layout": Layout(**layout)})


def flags(plan, engine: str) -> dict[str, object]:
    (p,) = emit(plan, engine).processes
    return {o.flag: o.value for o in p.options}


def test_vllm_dp_attention_and_expert_parallel_flags():
    o = flags(moe_plan("vllm", "deepseek-v3", tp=8, ep=8, dp_attention=8), "vllm")
    assert (o["--tensor-parallel-size"], o["--data-parallel-size"], o["--max-num-seqs"]) == (1, 8, 32)
    assert "--enable-expert-parallel" in o
    o = flags(moe_plan("vllm", tp=8, ep=8), "vllm")
    assert (
        o["--tensor-parallel-size"] == 8
        and "--data-parallel-size" not in o
        and "--enable-expert-parallel" in o
    )
    with pytest.raises(LayoutError, match="ep .4. must be 1 or tp"):
        emit(moe_plan("vllm", tp=8, ep=4), "vllm")


def test_sglang_dp_attention_flags():
    o = flags(moe_plan("sglang", "deepseek-v3", tp=8, ep=8, dp_attention=8), "sglang")
    assert (o["--tp-size"], o["--dp-size"], o["--ep-size"], o["--max-running-requests"]) == (8, 8, 8, 256)
    assert "--enable-dp-attention" in o
    with pytest.raises(LayoutError, match="--replicas dp"):
        emit(moe_plan("sglang", tp=4, replicas=2, ep=4, dp_attention=4), "sglang", replica_mode="dp")


def test_megatron_expert_parallel_passes_its_own_rules():
    o = flags(moe_plan("megatron", tp=8, ep=8), "megatron")
    assert (o["--expert-model-parallel-size"], o["--expert-tensor-parallel-size"]) == (8, 1)
    assert "--disable-bias-linear" in o  # Mixtral has no linear biases; Megatron's default has them
    o = flags(moe_plan("megatron", tp=4, ep=2), "megatron")
    assert (o["--expert-model-parallel-size"], o["--expert-tensor-parallel-size"]) == (2, 2)
    with pytest.raises(LayoutError, match="no data-parallel attention"):
        emit(moe_plan("megatron", tp=8, ep=8, dp_attention=8), "megatron")


def test_megatron_bias_follows_the_model():
    assert "--disable-bias-linear" in flags(make_plan(tp=8, engine="megatron"), "megatron")  # Llama too
    qwen = flags(make_plan("qwen2.5-32b", tp=8, engine="megatron"), "megatron")
    assert "--disable-bias-linear" in qwen and "--add-qkv-bias" in qwen
    unknown = MIXTRAL.model_copy(update={"linear_bias": None})
    plan = moe_plan("megatron", tp=8).model_copy(update={"model": unknown})
    with pytest.raises(LayoutError, match="Bias in MoE|bias in MoE only with ETP == 1"):
        emit(plan, "megatron")  # ETP = TP = 8 with Megatron's default bias: validate_args refuses it
    ok = moe_plan("megatron", tp=8, ep=8).model_copy(update={"model": unknown})
    assert "--disable-bias-linear" not in flags(ok, "megatron")  # ETP 1: a bias is allowed


@pytest.mark.parametrize(
    "name, expected",
    [
        ("Llama-3.1-70B", "none"),
        ("Mixtral-8x7B-v0.1", "none"),
        ("Qwen2-0.5B", "qkv"),
        ("gpt-oss-120b", None),
    ],
)
def test_linear_bias_from_hf_configs(reference, name, expected):
    raw = json.loads((reference / "models" / "hf_configs" / f"{name}.json").read_text())
    assert spec_fields_from_hf(raw, f"{name}.json", name).get("linear_bias") == expected


@pytest.mark.parametrize("engine", ["vllm", "sglang", "megatron"])
def test_every_moe_flag_is_in_the_engines_live_parser_dump(reference, engine):
    known = engine_flags(reference, engine)
    layout = {"tp": 8, "ep": 8} if engine == "megatron" else {"tp": 8, "ep": 8, "dp_attention": 8}
    launch = emit(moe_plan(engine, "deepseek-v3", **layout), engine)
    for argv in argv_of(render(launch, "cli")):
        for word in argv:
            if word.startswith("--") and word not in megatron_torchrun(engine):
                assert word in known, f"{engine} has no flag {word}"


def megatron_torchrun(engine: str) -> frozenset[str]:
    from tpplan.emit import megatron

    return megatron.TORCHRUN_FLAGS | megatron.ENTRY_POINT_FLAGS if engine == "megatron" else frozenset()


def test_candidates_list_the_expert_layouts_of_moe_models_only():
    meg = candidates.candidates(MIXTRAL, H100, engine="megatron", budget_gpus=8)
    assert {(c.tp, c.ep, c.dp_attention) for c in meg if c.tp == 8} == {(8, 1, 1), (8, 8, 1)}
    assert all(
        c.ep == c.dp_attention == 1 for c in candidates.candidates(LLAMA, H100, engine="vllm", budget_gpus=8)
    )


def test_the_search_rates_expert_parallel_dp_attention_best_for_deepseek_on_h200():
    """The done-when of issue 15 part 3, on every setup of the space at its solved max_num_seqs (no
    sampler luck; the solver is held to every integer in test_search_batch)."""
    from tpplan.api.search import prepare
    from tpplan.search.driver import solved_setups

    prep = prepare(
        "deepseek-v3", ["hgx-h200"], input_tokens=2048, output_tokens=256, slo_tpot_ms=100, engine="sglang"
    )
    assert "moe_index" in prep.space.dims
    best = max((s for s in solved_setups(prep) if s.feasible), key=lambda s: s.output_tokens_per_usd)
    assert (best.tp, best.ep, best.dp_attention) == (8, 8, 8)
