"""Check emitted Megatron-LM commands with megatron-core's own TransformerConfig.__post_init__.

Megatron-LM's `megatron/training` (validate_args) is not on PyPI and GitHub is out of reach here, so
this runs the part of Megatron's checking that ships in `megatron-core` — TransformerConfig /
MLATransformerConfig.__post_init__, where "Bias in Moe is only supported when ETP==1", heads % TP,
the query-group rule and the MoE checks live — and restates the two validate_args / parallel_state
rules it cannot import (num_experts % EP; ranks % (ETP·EP·PP), ETP defaulting to TP). Flags map to
config fields as megatron/training/arguments.py core_transformer_config_from_args maps them.

    python3 -m venv /tmp/mcore && /tmp/mcore/bin/pip install torch numpy packaging pyyaml einops
    /tmp/mcore/bin/pip install --no-deps megatron-core          # 0.16.1 was used
    tpplan emit plan.yaml --engine megatron | /tmp/mcore/bin/python scripts/check_megatron_moe.py

Reads the emitted script on stdin; prints one JSON line per torchrun command; exit 0 iff all pass.
Not a test (needs megatron-core and torch in their own venv).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import warnings

INT_FLAGS = (
    "--nproc-per-node", "--nnodes", "--tensor-model-parallel-size", "--pipeline-model-parallel-size",
    "--expert-model-parallel-size", "--expert-tensor-parallel-size", "--num-layers", "--hidden-size",
    "--num-attention-heads", "--num-query-groups", "--ffn-hidden-size", "--kv-channels", "--num-experts",
    "--moe-router-topk", "--moe-ffn-hidden-size", "--moe-shared-expert-intermediate-size", "--q-lora-rank",
    "--kv-lora-rank", "--qk-head-dim", "--qk-pos-emb-head-dim", "--v-head-dim",
)  # fmt: skip
BOOL_FLAGS = (
    "--sequence-parallel", "--disable-bias-linear", "--add-qkv-bias", "--swiglu", "--multi-latent-attention",
    "--group-query-attention", "--bf16", "--fp16",
)  # fmt: skip


def commands(text: str) -> list[list[str]]:
    """The torchrun command lines of an emitted script (continuations joined, env words dropped)."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if "torchrun" in words:
            out.append([w for w in words[words.index("torchrun") :] if w != "&"])
    return out


def config_fields(a: argparse.Namespace, torch) -> dict:
    dtype = torch.bfloat16 if a.bf16 else torch.float16
    kw = dict(
        num_layers=a.num_layers, hidden_size=a.hidden_size, num_attention_heads=a.num_attention_heads,
        ffn_hidden_size=a.ffn_hidden_size, tensor_model_parallel_size=a.tensor_model_parallel_size,
        pipeline_model_parallel_size=a.pipeline_model_parallel_size,
        expert_model_parallel_size=a.expert_model_parallel_size or 1,
        expert_tensor_parallel_size=a.expert_tensor_parallel_size or a.tensor_model_parallel_size,
        sequence_parallel=a.sequence_parallel, add_bias_linear=not a.disable_bias_linear,
        add_qkv_bias=a.add_qkv_bias, gated_linear_unit=a.swiglu, bf16=a.bf16, fp16=a.fp16,
        params_dtype=dtype, pipeline_dtype=dtype, normalization=a.normalization or "LayerNorm",
    )  # fmt: skip
    if a.group_query_attention:
        kw["num_query_groups"] = a.num_query_groups
    if a.kv_channels:
        kw["kv_channels"] = a.kv_channels
    if a.num_experts:
        kw |= dict(
            num_moe_experts=a.num_experts,
            moe_router_topk=a.moe_router_topk,
            moe_ffn_hidden_size=a.moe_ffn_hidden_size,
        )
        if a.moe_shared_expert_intermediate_size:
            kw["moe_shared_expert_intermediate_size"] = a.moe_shared_expert_intermediate_size
    if a.multi_latent_attention:
        kw |= dict(
            q_lora_rank=a.q_lora_rank, kv_lora_rank=a.kv_lora_rank, qk_head_dim=a.qk_head_dim,
            qk_pos_emb_head_dim=a.qk_pos_emb_head_dim, v_head_dim=a.v_head_dim,
        )  # fmt: skip
    return kw


def main() -> int:
    warnings.filterwarnings("ignore")
    import torch
    from megatron.core.transformer.transformer_config import MLATransformerConfig, TransformerConfig

    ap = argparse.ArgumentParser()
    for f in INT_FLAGS:
        ap.add_argument(f, type=int)
    for f in BOOL_FLAGS:
        ap.add_argument(f, action="store_true")
    ap.add_argument("--normalization")
    all_ok = True
    for argv in commands(sys.stdin.read()):
        a, _ = ap.parse_known_args(argv[1:])
        kw = config_fields(a, torch)
        ep, etp, pp = (
            kw["expert_model_parallel_size"],
            kw["expert_tensor_parallel_size"],
            kw["pipeline_model_parallel_size"],
        )
        ranks = a.nproc_per_node * (a.nnodes or 1)
        problems = []
        if a.num_experts and a.num_experts % ep:
            problems.append("num_experts % EP != 0 (arguments.py:1656-1658, restated)")
        if ranks % (etp * ep * pp):
            problems.append(f"{ranks} ranks % (ETP·EP·PP = {etp * ep * pp}) != 0 (parallel_state, restated)")
        try:
            (MLATransformerConfig if a.multi_latent_attention else TransformerConfig)(**kw)
        except Exception as e:  # Megatron's own __post_init__ refusing the arguments
            problems.append(f"TransformerConfig: {type(e).__name__}: {e}")
        all_ok &= not problems
        summary = {"tp": kw["tensor_model_parallel_size"], "pp": pp, "ep": ep, "etp": etp, "ranks": ranks}
        print(
            json.dumps({"ok": not problems, **summary, "bias": kw["add_bias_linear"], "problems": problems})
        )
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
