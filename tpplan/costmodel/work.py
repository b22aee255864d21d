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

Expert parallelism (ep of the tp ranks hold whole experts, expert TP = tp/ep): each rank holds E/ep
experts at 3·h·I/(tp/ep) each and sees E_touched/ep of them, every touched expert with the same
M·k/E_touched tokens, so the expert GEMMs are wider and run at more tokens than TP-sharded ones for
the same FLOPs. DP attention (dp groups, attention TP tp/dp): a rank's attention works on its own
group's share of the step's tokens (M/dp, decodes and prompt chunks alike); the MLPs and experts
see the whole batch M. Its collectives (`collectives`): the attention all-reduce over tp/dp ranks; around
each dense MLP (and a TP-sharded MoE) a gather + scatter over tp ranks, priced as an all-reduce of
M tokens (all-gather + reduce-scatter move what a ring all-reduce moves); with EP, a dispatch and a
combine all-to-all of the group's tokens × k per MoE layer instead. Without DP attention an EP
group's tokens are already on every rank (after the attention all-reduce), so an EP MoE layer
combines with the same all-reduce a TP-sharded one uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import memory
from ..specs import DTYPE_BYTES, ModelSpec

ACTIVATION_BYTES = 2  # engines all-reduce bf16/fp16 activations, also when weights are fp8


def activation_dtype_bytes(dtype: str) -> int:
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


Gemm = tuple[int, int]  # (n output features, k input features) of one weight matrix on one rank


@dataclass(frozen=True)
class Op:
    name: str  # linear | experts | lm_head | attention (decode) | prefill_attention
    flops: float
    bytes: float
    reads: str  # what the bytes are: weights | kv
    low_precision: bool  # runs at the weight dtype's peak (fp8 GEMMs) rather than bf16
    # for the kernel tables: GEMMs as (m tokens, n, k, how many), or the attention's shape as
    # (sequences, context, query heads, kv heads) for decode, (length, query heads) for prefill
    gemms: tuple[tuple[float, int, int, float], ...] = ()
    shape: tuple[float, ...] = ()


@dataclass(frozen=True)
class Collective:
    """Collectives beyond the plain TP all-reduces (DP attention, EP): `count` of `bytes` each per rank."""

    kind: str  # allreduce | alltoall
    count: int
    bytes: float
    ranks: int


@dataclass(frozen=True)
class StageWork:
    ops: tuple[Op, ...]
    layers: int
    allreduce_count: int
    allreduce_bytes: float  # each
    collectives: tuple[Collective, ...] = ()


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
    activation_dtype_bytes: int
    dense_gemms: tuple[Gemm, ...] = ()  # the matrices behind dense_params
    moe_linear_gemms: tuple[Gemm, ...] = ()  # behind moe_linear_params
    expert_gemms: tuple[Gemm, ...] = ()  # behind expert_params
    lm_head_gemm: Gemm | None = None
    q_heads: int = 1  # attention heads on this rank
    kv_heads: int = 1  # KV heads on this rank (1 for MLA's latent)
    kv_dtype: str = "bf16"
    # DP attention / EP (1 and 1: plain TP). With dp > 1 the attention projections are kept apart
    # (attn_params, attn_gemms per layer) because they see only this group's tokens.
    tp: int = 1
    dp: int = 1
    ep: int = 1
    attn_params: float = 0.0
    attn_gemms: tuple[Gemm, ...] = ()


def _attention_flops_per_token_ctx(model: ModelSpec, tp: int, decode: bool) -> float:
    heads = memory.heads_on_rank(model.num_attention_heads, tp)
    if model.mla:
        m = model.mla
        if decode:  # weights absorbed: scores and values over the latent (vLLM's MLA decode path)
            return 2 * heads * (2 * m.kv_lora_rank + m.qk_rope_head_dim)
        return 2 * heads * (m.qk_nope_head_dim + m.qk_rope_head_dim + m.v_head_dim)
    return 4 * heads * model.head_dim  # QK^T and PV


def _attention_gemms(model: ModelSpec, tp: int) -> tuple[Gemm, ...]:
    """The attention projections on one rank, sharded as memory.attention_params_per_rank counts them."""
    h, heads = model.hidden_size, memory.heads_on_rank(model.num_attention_heads, tp)
    if model.mla:
        m = model.mla
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        q = ((m.q_lora_rank, h), (heads * qk, m.q_lora_rank)) if m.q_lora_rank else ((heads * qk, h),)
        kv = (
            (m.kv_lora_rank + m.qk_rope_head_dim, h),
            (heads * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank),
        )
        return (*q, *kv, (h, heads * m.v_head_dim))
    kv = memory.kv_heads_on_rank(model, tp)
    return (((heads + 2 * kv) * model.head_dim, h), (h, heads * model.head_dim))


def _mlp_gemms(h: int, inter: int, gated: bool, tp: int) -> tuple[Gemm, ...]:
    """Up (fused gate+up when gated, column-parallel) and down (row-parallel) of one MLP."""
    if inter <= 0:
        return ()
    local = max(1, round(inter / tp))
    return ((local * (2 if gated else 1), h), (h, local))


def stage_shape(
    model: ModelSpec,
    tp: int,
    *,
    layers: range,
    last: bool,
    kv_dtype: str,
    lm_head: bool = True,
    ep: int = 1,
    dp: int = 1,
) -> StageShape:
    h = model.hidden_size
    n_moe = sum(model.is_moe_layer(i) for i in layers)
    atp = tp // dp
    attn = memory.attention_params_per_rank(model, atp)
    dense_index = next((i for i in layers if not model.is_moe_layer(i)), None)
    dense = attn + memory.mlp_params_per_rank(model, tp, dense_index) if dense_index is not None else 0.0
    moe = model.moe
    attn_gemms = _attention_gemms(model, atp)
    apart = dp > 1  # attention projections booked on their own, at this group's tokens
    etp = tp // ep  # expert TP: each routed expert's shard
    return StageShape(
        layers=len(layers),
        dense_layers=len(layers) - n_moe,
        moe_layers=n_moe,
        dense_params=dense - attn if apart and dense else dense,
        moe_linear_params=(0.0 if apart else attn)
        + (3 * h * moe.shared_expert_intermediate_size / tp + h * moe.num_experts if moe else 0),
        expert_params=3 * h * moe.expert_intermediate_size / etp if moe else 0.0,
        experts=moe.num_experts if moe else 0,
        experts_per_token=moe.experts_per_token if moe else 0,
        attn_decode_flops=_attention_flops_per_token_ctx(model, atp, decode=True),
        attn_prefill_flops=_attention_flops_per_token_ctx(model, atp, decode=False),
        kv_bytes_per_token=memory.kv_bytes_per_token(model, atp, 1, kv_dtype),
        lm_head_params=memory.padded_vocab(model) * h / tp if last and lm_head else 0.0,
        weight_bytes=DTYPE_BYTES[model.dtype],
        low_precision=model.dtype == "fp8",
        hidden=h,
        allreduces_per_layer=model.allreduces_per_layer if tp > 1 else 0,
        window=model.sliding_window_tokens,
        activation_dtype_bytes=activation_dtype_bytes(model.dtype),
        dense_gemms=(() if apart else attn_gemms)
        + _mlp_gemms(h, model.intermediate_size, model.gated_mlp, tp),
        moe_linear_gemms=(() if apart else attn_gemms)
        + (
            _mlp_gemms(h, moe.shared_expert_intermediate_size, True, tp) + ((moe.num_experts, h),)
            if moe
            else ()
        ),
        expert_gemms=_mlp_gemms(h, moe.expert_intermediate_size, True, etp) if moe else (),
        lm_head_gemm=(memory.padded_vocab(model) // tp, h) if last and lm_head else None,
        q_heads=memory.heads_on_rank(model.num_attention_heads, atp),
        kv_heads=1 if model.mla else memory.kv_heads_on_rank(model, atp),
        kv_dtype=kv_dtype,
        tp=tp,
        dp=dp,
        ep=ep,
        attn_params=attn if apart else 0.0,
        attn_gemms=attn_gemms if apart else (),
    )


def stage_work(s: StageShape, batch: Batch) -> StageWork:
    """FLOPs and bytes of one step over a stage's layers on one TP rank."""
    m_tokens, w, low = batch.tokens, s.weight_bytes, s.low_precision
    ops: list[Op] = []

    def gemms(shapes: tuple[Gemm, ...], m: float, count: float) -> tuple[tuple[float, int, int, float], ...]:
        return tuple((m, n, k, count) for n, k in shapes)

    def linear(layers: int, params: float, shapes: tuple[Gemm, ...]) -> Op:
        """`layers` layers' dense projections of `params` each: every token through every matrix."""
        flops, nbytes = layers * 2 * m_tokens * params, layers * params * w
        return Op("linear", flops, nbytes, "weights", low, gemms(shapes, m_tokens, layers))

    # DP attention: each group runs its share of the decodes and of the prompt tokens (SGLang
    # divides chunked_prefill_size by dp_size under --enable-dp-attention, so the groups together
    # take the instance's token budget; assumed balanced)
    group_seqs = batch.decode_seqs / s.dp
    m_attn = m_tokens / s.dp
    if s.attn_params:
        flops, nbytes = s.layers * 2 * m_attn * s.attn_params, s.layers * s.attn_params * w
        ops.append(Op("linear", flops, nbytes, "weights", low, gemms(s.attn_gemms, m_attn, s.layers)))
    if s.dense_layers:
        ops.append(linear(s.dense_layers, s.dense_params, s.dense_gemms))
    if s.moe_layers:
        n, e, k = s.moe_layers, s.experts, s.experts_per_token
        ops.append(linear(n, s.moe_linear_params, s.moe_linear_gemms))
        touched = e * (1 - (1 - k / e) ** m_tokens) if m_tokens > 0 else 0.0
        per_expert = m_tokens * k / touched if touched else 0.0  # tokens each touched expert sees
        local = touched / s.ep  # of them, those whose (shard of) weights this rank holds
        # One fused-MoE kernel per matrix and layer runs all local experts (vLLM fused_moe, SGLang's
        # grouped GEMMs): priced as one GEMM of per-expert rows over the experts' matrices side by
        # side (same bytes and FLOPs), not as one small GEMM per expert with a launch floor each.
        group = max(1, round(local))
        grouped = tuple((per_expert, nn * group, kk, n * local / group) for nn, kk in s.expert_gemms)
        ops.append(
            Op(
                "experts",
                n * 2 * m_tokens * k * s.expert_params / s.ep,
                n * local * s.expert_params * w,
                "weights",
                low,
                grouped if per_expert else (),
            )
        )
    ctx_d = min(batch.decode_context, s.window) if s.window else batch.decode_context
    ctx_p = min(batch.prefill_context, s.window) if s.window else batch.prefill_context
    decode_flops = group_seqs * ctx_d * s.attn_decode_flops
    decode_bytes = s.kv_bytes_per_token * group_seqs * ctx_d
    shape = (group_seqs, ctx_d, s.q_heads, s.kv_heads)
    ops.append(Op("attention", s.layers * decode_flops, s.layers * decode_bytes, "kv", False, shape=shape))
    if batch.prefill_tokens:
        flops = batch.prefill_tokens / s.dp * ctx_p * s.attn_prefill_flops
        kv_written = s.kv_bytes_per_token * batch.prefill_tokens / s.dp
        # a causal prompt of length L attends to L/2 tokens on average: the table's length is 2·ctx
        shape = (2 * ctx_p, s.q_heads)
        ops.append(Op("prefill_attention", s.layers * flops, s.layers * kv_written, "kv", False, shape=shape))
    if s.lm_head_params:
        ops.append(
            Op(
                "lm_head",
                2 * batch.logits_rows * s.lm_head_params,
                s.lm_head_params * w,
                "weights",
                low,
                gemms((s.lm_head_gemm,), batch.logits_rows, 1) if s.lm_head_gemm else (),
            )
        )
    token_bytes = s.hidden * s.activation_dtype_bytes
    if s.dp == 1:
        return StageWork(tuple(ops), s.layers, s.layers * s.allreduces_per_layer, m_tokens * token_bytes)
    return StageWork(
        tuple(ops),
        s.layers,
        0,
        0.0,
        dp_attention_collectives(s, m_attn, m_tokens=m_tokens, token_bytes=token_bytes),
    )


def dp_attention_collectives(
    s: StageShape, m_attn: float, *, m_tokens: float, token_bytes: int
) -> tuple[Collective, ...]:
    """A DP-attention stage's collectives per step (module docstring): per layer the attention
    all-reduce over tp/dp ranks; per dense layer (and TP-sharded MoE layer) a gather + scatter over
    tp ranks; per EP MoE layer a dispatch and a combine all-to-all of this rank's tokens × top-k."""
    out = []
    atp = s.tp // s.dp
    if atp > 1:
        out.append(Collective("allreduce", s.layers, m_attn * token_bytes, atp))
    expert_layers = s.moe_layers if s.ep > 1 else 0
    if s.layers - expert_layers:
        out.append(Collective("allreduce", s.layers - expert_layers, m_tokens * token_bytes, s.tp))
    if expert_layers:
        out.append(
            Collective("alltoall", 2 * expert_layers, m_attn * s.experts_per_token * token_bytes, s.ep)
        )
    return tuple(out)
