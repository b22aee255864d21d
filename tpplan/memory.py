"""Per-rank parameter counts, weight bytes and KV-cache bytes of a TP×PP layout.

Shards as vLLM / Megatron do: QKV and MLP-up column-parallel, attention-out and MLP-down
row-parallel (so each holds 1/tp of its matrix), KV heads replicated when kv_heads < tp,
routed experts split by TP — or, with expert parallelism, whole experts split over the EP ranks of the
same tp GPUs, the same bytes per rank (ep × expert-TP = tp) —, the vocabulary padded to a multiple of
64 and split by TP, embeddings on the first stage and the LM head on the last.
With data-parallel attention (`dp` groups, SGLang --enable-dp-attention / vLLM --data-parallel-size
on MoE models) the attention layers run at TP tp/dp: their weights are replicated per DP group and
each group keeps the KV cache of its own requests only (not every TP rank the whole MLA cache).
Pure arithmetic on the ModelSpec; the cost model reuses it.
"""

from __future__ import annotations

import math

from .specs import DTYPE_BYTES, ModelSpec

GIB = 1024**3
VOCAB_PAD = 64  # vllm/model_executor/layers/vocab_parallel_embedding.py:36 (DEFAULT_VOCAB_PADDING_SIZE)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def padded_vocab(model: ModelSpec) -> int:
    return ceil_div(model.vocab_size, VOCAB_PAD) * VOCAB_PAD


def pp_split(num_layers: int, pp: int) -> list[int]:
    """Layers per stage as vLLM's get_pp_indices splits them (vllm/distributed/utils.py:198-241):
    q = L // P each, and the r = L % P extra layers go to the stages just before the last."""
    q, r = divmod(num_layers, pp)
    parts = [q] * pp
    for i in range(2, r + 2):
        parts[-i] += 1
    return parts


def stage_layer_ranges(layers_per_stage: list[int]) -> list[range]:
    out, start = [], 0
    for n in layers_per_stage:
        out.append(range(start, start + n))
        start += n
    return out


def heads_on_rank(total: int, tp: int) -> int:
    """Query heads on the busiest rank (⌈h/tp⌉ when the split is uneven)."""
    return ceil_div(total, tp)


def kv_heads_on_rank(model: ModelSpec, tp: int) -> int:
    """KV heads each rank stores: max(1, kv // tp) (vllm/config/model.py:1663-1683), 1 latent for MLA."""
    if model.mla:
        return 1
    return max(1, ceil_div(model.num_kv_heads, tp)) if model.num_kv_heads >= tp else 1


def attention_params_per_rank(model: ModelSpec, tp: int) -> float:
    h = model.hidden_size
    heads = heads_on_rank(model.num_attention_heads, tp)
    if model.mla:
        m = model.mla
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        # q_a / kv_a are replicated; q_b / kv_b column-parallel; o row-parallel (vLLM deepseek_v2.py).
        q = (h * m.q_lora_rank + m.q_lora_rank * heads * qk) if m.q_lora_rank else h * heads * qk
        kv_a = h * (m.kv_lora_rank + m.qk_rope_head_dim)
        kv_b = m.kv_lora_rank * heads * (m.qk_nope_head_dim + m.v_head_dim)
        o = heads * m.v_head_dim * h
        return q + kv_a + kv_b + o
    kv = kv_heads_on_rank(model, tp)
    return h * heads * model.head_dim * 2 + h * kv * model.head_dim * 2  # q and o; k and v


def mlp_params_per_rank(model: ModelSpec, tp: int, layer: int) -> float:
    h = model.hidden_size
    mats = 3 if model.gated_mlp else 2
    if not model.is_moe_layer(layer):
        return mats * h * model.intermediate_size / tp
    moe = model.moe
    assert moe is not None
    routed = moe.num_experts * 3 * h * moe.expert_intermediate_size / tp
    shared = 3 * h * moe.shared_expert_intermediate_size / tp
    router = h * moe.num_experts
    return routed + shared + router


def stage_params_per_rank(
    model: ModelSpec, tp: int, layers: range, first: bool, last: bool, dp: int = 1
) -> float:
    """Parameters on one rank of a stage; attention at TP tp/dp (replicated per DP-attention group)."""
    h = model.hidden_size
    attn = attention_params_per_rank(model, tp // dp)
    params = sum(attn + mlp_params_per_rank(model, tp, i) + 2 * h for i in layers)
    vocab_shard = padded_vocab(model) * h / tp
    if first:
        params += vocab_shard
    if last:
        params += h  # final norm
        if not (model.tie_word_embeddings and first):
            params += vocab_shard
    return params


def weight_bytes_per_stage(
    model: ModelSpec, tp: int, layers_per_stage: list[int], dtype: str | None = None, dp: int = 1
) -> list[float]:
    """Weight bytes held by one rank of each pipeline stage."""
    nbytes = DTYPE_BYTES[dtype or model.dtype]
    ranges = stage_layer_ranges(layers_per_stage)
    last = len(ranges) - 1
    return [stage_params_per_rank(model, tp, r, i == 0, i == last, dp) * nbytes for i, r in enumerate(ranges)]


def total_params(model: ModelSpec) -> float:
    return stage_params_per_rank(model, 1, range(model.num_layers), True, True)


def active_params(model: ModelSpec) -> float:
    """Parameters a token touches (top-k experts instead of all): what decode compute scales with."""
    if not model.moe:
        return total_params(model)
    moe = model.moe
    idle = (moe.num_experts - moe.experts_per_token) * 3 * model.hidden_size * moe.expert_intermediate_size
    return total_params(model) - idle * model.num_moe_layers


def kv_bytes_per_token(model: ModelSpec, tp: int, layers: int, kv_dtype: str) -> float:
    """KV-cache bytes one rank stores per token for `layers` layers.

    Standard attention: 2 (K and V) · layers · kv_heads_per_rank · head_dim · bytes
    (vllm/v1/kv_cache_interface.py:586-600). MLA: one latent of kv_lora_rank + rope dims per layer,
    the same on every TP rank (kv_cache_interface.py:729-745).
    """
    nbytes = DTYPE_BYTES[kv_dtype]
    if model.mla:
        return layers * model.mla.cache_width * nbytes
    return 2 * layers * kv_heads_on_rank(model, tp) * model.head_dim * nbytes


def activation_memory_bytes(
    model: ModelSpec, tp: int, batched_tokens: int, dtype: str | None = None, dp: int = 1
) -> float:
    """Peak activations of one forward pass over `batched_tokens` tokens on one rank.

    Live at once in a layer (per token): the residual and its normed copy (2·hidden), the QKV
    output (at attention TP tp/dp), and the MLP's gate+up output (2·ffn/tp), plus fp32 logits for
    the sampled rows.
    """
    nbytes = DTYPE_BYTES[dtype or model.dtype]
    atp = tp // dp
    qkv = (heads_on_rank(model.num_attention_heads, atp) + 2 * kv_heads_on_rank(model, atp)) * model.head_dim
    ffn = (
        model.moe.expert_intermediate_size * model.moe.experts_per_token
        if model.moe
        else model.intermediate_size
    )
    per_token = 2 * model.hidden_size + qkv + 2 * math.ceil(max(ffn, model.intermediate_size) / tp)
    return batched_tokens * per_token * nbytes


def kv_tokens_per_instance(tokens_per_rank: int, dp: int) -> int:
    """Tokens of KV cache one instance holds: each DP-attention group caches its own requests, so
    the groups add up; without DP attention every TP rank holds a slice (or copy) of the same tokens."""
    return tokens_per_rank * dp
