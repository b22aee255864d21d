"""Megatron-LM: the torchrun command per node, model-shape flags, and Megatron's own rules."""

from __future__ import annotations

import pytest
from emit_helpers import make_plan

from tpplan import io
from tpplan.emit import emit, megatron
from tpplan.emit.common import Target
from tpplan.errors import LayoutError
from tpplan.records import Option
from tpplan.specs import MLASpec, MoESpec


def opts(process) -> dict[str, object]:
    return {o.flag: o.value for o in process.options}


def test_llama_shape_and_serving_flags():
    (p,) = emit(
        make_plan(tp=8, model_path="meta-llama/Llama-3.1-70B"), "megatron", checkpoint="/ckpt"
    ).processes
    o = opts(p)
    assert p.command == ["torchrun", "--standalone", "--nproc-per-node", "8", megatron.ENTRY_POINT]
    assert {k: o[k] for k in ("--num-layers", "--hidden-size", "--num-attention-heads", "--num-query-groups",
                              "--ffn-hidden-size", "--seq-length", "--normalization", "--load")} == {
        "--num-layers": 80, "--hidden-size": 8192, "--num-attention-heads": 64, "--num-query-groups": 8,
        "--ffn-hidden-size": 28672, "--seq-length": 4096, "--normalization": "RMSNorm", "--load": "/ckpt"}  # fmt: skip
    assert {"--group-query-attention", "--swiglu", "--sequence-parallel", "--tp-comm-overlap"} <= o.keys()
    assert "--kv-channels" not in o  # 64 × 128 = 8192
    assert p.env["CUDA_DEVICE_MAX_CONNECTIONS"] == "1"  # H100 is compute capability 9.0


def test_connections_env_follows_the_gpu_architecture():
    assert (
        "CUDA_DEVICE_MAX_CONNECTIONS" not in emit(make_plan(profile="hgx-b200"), "megatron").processes[0].env
    )
    assert "CUDA_DEVICE_MAX_CONNECTIONS" not in emit(make_plan(tp=1, replicas=2), "megatron").processes[0].env
    unknown = make_plan().model_copy(update={"profile": io.load_profile("dgx-h100").model_copy(
        update={"gpu": io.load_profile("dgx-h100").gpu.model_copy(update={"name": "Mystery X1"})})})  # fmt: skip
    launch = emit(unknown, "megatron")
    assert launch.processes[0].env["CUDA_DEVICE_MAX_CONNECTIONS"] == "1"
    assert any("unknown" in n for n in launch.notes)


def test_tp_comm_overlap_only_inside_an_nvlink_domain():
    crossing = emit(make_plan(tp=16), "megatron")
    assert "--tp-comm-overlap" not in opts(crossing.processes[0]) and "--sequence-parallel" in opts(
        crossing.processes[0]
    )
    assert any("TransformerEngine#1071" in n for n in crossing.notes)
    nvl72 = emit(make_plan(profile="gb200-nvl72", tp=8), "megatron")  # 2 nodes of 4, one 72-GPU domain
    assert "--tp-comm-overlap" in opts(nvl72.processes[0]) and nvl72.nodes == 2
    pcie = emit(make_plan("llama-3.1-8b", "l40s-8x-pcie", tp=2), "megatron")
    assert "--tp-comm-overlap" not in opts(pcie.processes[0])
    assert "--sequence-parallel" not in opts(emit(make_plan("llama-3.1-8b", tp=1), "megatron").processes[0])


def test_multi_node_torchrun_per_node():
    launch = emit(make_plan(tp=8, pp=2), "megatron", node_addrs=("10.0.0.1", "10.0.0.2"))
    assert [p.command[:9] for p in launch.processes] == [
        [
            "torchrun",
            "--nproc-per-node",
            "8",
            "--nnodes",
            "2",
            "--node-rank",
            str(i),
            "--master-addr",
            "10.0.0.1",
        ]
        for i in (0, 1)
    ]


def test_moe_and_mla_and_head_dim_flags():
    mixtral = opts(emit(make_plan("mixtral-8x7b", tp=2), "megatron").processes[0])
    assert (mixtral["--num-experts"], mixtral["--moe-router-topk"], mixtral["--moe-ffn-hidden-size"]) == (
        8,
        2,
        14336,
    )
    assert "--moe-layer-freq" not in mixtral  # every layer is MoE
    base = io.load_model("llama-3.1-8b")
    interleaved = base.model_copy(
        update={
            "moe": MoESpec(
                num_experts=16, experts_per_token=1, expert_intermediate_size=8192, moe_layer_step=2
            )
        }
    )
    o = opts(emit(make_plan(tp=2).model_copy(update={"model": interleaved}), "megatron").processes[0])
    assert o["--moe-layer-freq"] == "[" + ",".join(["0", "1"] * 16) + "]"
    mla = base.model_copy(
        update={
            "mla": MLASpec(
                kv_lora_rank=512, qk_rope_head_dim=64, qk_nope_head_dim=128, v_head_dim=128, q_lora_rank=1536
            )
        }
    )
    o = opts(emit(make_plan(tp=2).model_copy(update={"model": mla}), "megatron").processes[0])
    assert (o["--kv-lora-rank"], o["--qk-head-dim"], o["--qk-pos-emb-head-dim"], o["--q-lora-rank"]) == (
        512,
        128,
        64,
        1536,
    )
    assert "--multi-latent-attention" in o and "--group-query-attention" not in o
    wide = base.model_copy(update={"head_dim": 256})  # 32 × 256 ≠ 4096 (Gemma-style)
    assert (
        opts(emit(make_plan(tp=2).model_copy(update={"model": wide}), "megatron").processes[0])[
            "--kv-channels"
        ]
        == 256
    )


def test_megatron_refusals():
    with pytest.raises(LayoutError, match=r"num_layers \(32\) is not divisible by pp \(3\)"):
        emit(make_plan("llama-3.1-8b", tp=1, pp=3), "megatron")
    with pytest.raises(LayoutError, match="no KV-cache dtype flag"):
        emit(make_plan(kv_cache_dtype="fp8"), "megatron")
    with pytest.raises(LayoutError, match="fp8 needs compute capability"):
        emit(make_plan(profile="dgx-a100-80g", dtype="fp8", kv_cache_dtype="bf16"), "megatron")
    # auto is the activation dtype (bf16) for fp8 weights too, which is Megatron-LM's own cache
    assert "--bf16" in opts(emit(make_plan(dtype="fp8"), "megatron").processes[0])
    o = opts(emit(make_plan(dtype="fp8", kv_cache_dtype="bf16"), "megatron").processes[0])
    assert o["--fp8-format"] == "e4m3" and "--bf16" in o
    with pytest.raises(LayoutError, match="one model copy per torchrun job"):
        emit(make_plan(tp=4, replicas=2), "megatron", replica_mode="dp")


def test_verify_catches_what_megatron_would_reject():
    t = Target(make_plan(tp=8), "megatron")
    good = [Option(flag="--sequence-parallel"), Option(flag="--tp-comm-overlap")]
    megatron.verify(t, good, env={"CUDA_DEVICE_MAX_CONNECTIONS": "1"}, ranks=8)
    with pytest.raises(LayoutError, match="requires --sequence-parallel"):
        megatron.verify(
            t, [Option(flag="--tp-comm-overlap")], env={"CUDA_DEVICE_MAX_CONNECTIONS": "1"}, ranks=8
        )
    with pytest.raises(LayoutError, match="CUDA_DEVICE_MAX_CONNECTIONS=1"):
        megatron.verify(t, good, env={}, ranks=8)
    with pytest.raises(LayoutError, match="starts 4 ranks"):
        megatron.verify(t, good, env={"CUDA_DEVICE_MAX_CONNECTIONS": "1"}, ranks=4)
