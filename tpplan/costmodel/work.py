"""The work of one forward step on one rank of one pipeline stage: FLOPs, bytes, all-reduces.

Shapes come from `memory.py` (per-rank parameters, KV bytes per token, padded vocabulary), sharded as
vLLM and Megatron shard: QKV / MLP-up column-parallel, attention-out / MLP-down row-parallel, routed
experts split by TP (no expert parallelism), KV heads replicated when kv_heads < tp, MLA's latent
cache whole on every rank.

Per decoder layer, with M = decode_seqs + prefill_tokens tokens in the step:
  linear     2·M·P_dense FLOPs, P_dense·w bytes   (attention projections, dense MLP / shared experts, router)
  experts    2·M·k·P_expert FLOPs, E_touched·P_expert·w bytes,  E_touched = E·(1 − (1 − k/E)^M)
  attention  4·heads_rank·head_dim·(decode_seqs·ctx_decode + prefill_tokens·ctx_prefill) FLOPs
             (MLA: latent-absorbed decode, 2·heads·(2·kv_lora + rope) per context token; MHA prefill),
             KV bytes per token · (decode_seqs·ctx_decode + prefill_tokens)
  all-reduce allreduces_per_layer × (M · hidden · activation bytes)
and the LM head on the last stage: 2·rows·V·h/tp FLOPs, V·h/tp·w bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import memory
from ..specs import DTYPE_BYTES, ModelSpec

ACTIVATION_BYTES = 2  # engines all-reduce bf16/fp16 activations, also when weights are fp8


def activation_bytes(dtype: str) -> int:
    """Bytes per activation element: fp32 models (CPU sweeps) carry fp32 activations."""
    return 4 if dtype == "fp32" else ACTIVATION_BYTES


@dataclass(frozen=True)
class Batch:
    """What one forward step of one micro-batch processes."""

    decode_seqs: float  # sequences generating one token each
    decode_context: float  # mean tokens of KV cache each of them attends to
    prefill_tokens: float  # prompt tokens in the step (chunked prefill shares the step with decodes)
    prefill_context: float  # mean earlier tokens each prompt token attends to (causal: ~half the prompt)
    logits_rows: float  # rows through the LM head: decodes plus prompts that finish in this step

    @property
    def tokens(self) -> float:
        return self.decode_seqs + self.prefill_tokens


@dataclass(frozen=True)
class Op:
    name: str  # linear | experts | attention | lm_head
    flops: float
    bytes: float
    reads: str  # what the bytes are: weights | kv
    low_precision: bool  # runs at the weight dtype's peak (fp8 GEMMs) rather than bf16


@dataclass(frozen=True)
class StageWork:
    ops: tuple[Op, ...]
    layers: int
    allreduce_count: int
    allreduce_bytes: float  # each


@dataclass(frozen=True)
class StageShape:
    """The batch-independent sizes of one pipeline stage on one TP rank (parameters are per rank)."""

    layers: int
    dense_layers: int
    moe_layers: int
    dense_params: float  # per dense layer: attention projections + MLP
    moe_linear_params: float  # per MoE layer: attention projections + shared experts + router
    expert_params: float  # one routed expert's shard
    experts: int
    experts_per_token: int
    attn_decode_flops: float  # per decode token per context token per layer
    attn_prefill_flops: float  # per prompt token per context token per layer
    kv_bytes_per_token: float  # per layer
    lm_head_params: float  # 0 unless the stage computes logits
    weight_bytes: float  # bytes per parameter
    low_precision: bool
    hidden: int
    allreduces_per_layer: int  # 0 at tp = 1
    window: int | None
    activation_bytes: int


def _attention_flops_per_token_ctx(model: ModelSpec, tp: int, decode: bool) -> float:
    heads = memory.heads_on_rank(model.num_attention_heads, tp)
    if model.mla:
        m = model.mla
        if decode:  # weights absorbed: scores and values over the latent (vLLM's MLA decode path)
            return 2 * heads * (2 * m.kv_lora_rank + m.qk_rope_head_dim)
        return 2 * heads * (m.qk_nope_head_dim + m.qk_rope_head_dim + m.v_head_dim)
    return 4 * heads * model.head_dim  # QK^T and PV


def stage_shape(
    model: ModelSpec, tp: int, layers: range, last: bool, kv_dtype: str, lm_head: bool = True
) -> StageShape:
    h = model.hidden_size
    n_moe = sum(model.is_moe_layer(i) for i in layers)
    attn = memory.attention_params_per_rank(model, tp)
    dense_index = next((i for i in layers if not model.is_moe_layer(i)), None)
    dense = attn + memory.mlp_params_per_rank(model, tp, dense_index) if dense_index is not None else 0.0
    moe = model.moe
    return StageShape(
        layers=len(layers),
        dense_layers=len(layers) - n_moe,
        moe_layers=n_moe,
        dense_params=dense,
        moe_linear_params=attn
        + (3 * h * moe.shared_expert_intermediate_size / tp + h * moe.num_experts if moe else 0),
        expert_params=3 * h * moe.expert_intermediate_size / tp if moe else 0.0,
        experts=moe.num_experts if moe else 0,
        experts_per_token=moe.experts_per_token if moe else 0,
        attn_decode_flops=_attention_flops_per_token_ctx(model, tp, decode=True),
        attn_prefill_flops=_attention_flops_per_token_ctx(model, tp, decode=False),
        kv_bytes_per_token=memory.kv_bytes_per_token(model, tp, 1, kv_dtype),
        lm_head_params=memory.padded_vocab(model) * h / tp if last and lm_head else 0.0,
        weight_bytes=DTYPE_BYTES[model.dtype],
        low_precision=model.dtype == "fp8",
        hidden=h,
        allreduces_per_layer=model.allreduces_per_layer if tp > 1 else 0,
        window=model.sliding_window_tokens,
        activation_bytes=activation_bytes(model.dtype),
    )


def stage_work(s: StageShape, batch: Batch) -> StageWork:
    """FLOPs and bytes of one step over a stage's layers on one TP rank."""
    m_tokens, w, low = batch.tokens, s.weight_bytes, s.low_precision
    ops: list[Op] = []
    if s.dense_layers:
        n = s.dense_layers
        ops.append(Op("linear", n * 2 * m_tokens * s.dense_params, n * s.dense_params * w, "weights", low))
    if s.moe_layers:
        n, e, k = s.moe_layers, s.experts, s.experts_per_token
        ops.append(
            Op("linear", n * 2 * m_tokens * s.moe_linear_params, n * s.moe_linear_params * w, "weights", low)
        )
        touched = e * (1 - (1 - k / e) ** m_tokens) if m_tokens > 0 else 0.0
        ops.append(
            Op(
                "experts",
                n * 2 * m_tokens * k * s.expert_params,
                n * touched * s.expert_params * w,
                "weights",
                low,
            )
        )
    ctx_d = min(batch.decode_context, s.window) if s.window else batch.decode_context
    ctx_p = min(batch.prefill_context, s.window) if s.window else batch.prefill_context
    flops = (
        batch.decode_seqs * ctx_d * s.attn_decode_flops + batch.prefill_tokens * ctx_p * s.attn_prefill_flops
    )
    kv_bytes = s.kv_bytes_per_token * (batch.decode_seqs * ctx_d + batch.prefill_tokens)
    ops.append(Op("attention", s.layers * flops, s.layers * kv_bytes, "kv", False))
    if s.lm_head_params:
        ops.append(
            Op("lm_head", 2 * batch.logits_rows * s.lm_head_params, s.lm_head_params * w, "weights", low)
        )
    return StageWork(
        tuple(ops), s.layers, s.layers * s.allreduces_per_layer, m_tokens * s.hidden * s.activation_bytes
    )
