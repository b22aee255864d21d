"""ModelSpec: the shape of a decoder-only LLM, as much as parallel layout, memory and compute need.

Read from tpplan's own `model.yaml` (these field names) or from a Hugging Face `config.json`
(see `specs/hf.py`). Only shapes live here; what an engine accepts is `engines.py`'s business.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .base import Frozen, Name

Dim = Annotated[int, Field(ge=1, le=1_048_576)]
Count = Annotated[int, Field(ge=1, le=100_000)]
# Hugging Face's own rule for repo ids: org/name, letters, digits, '-', '_', '.'; at most 96 characters
HF_REPO_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$"
HfRepoId = Annotated[str, Field(pattern=HF_REPO_ID_PATTERN)]
WeightDtype = Literal["bf16", "fp16", "fp32", "fp8"]
ActivationDtype = Literal["bf16", "fp16"]

DTYPE_BYTES: dict[str, float] = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}


def compute_dtype(weight_dtype: str, activation_dtype: str = "bf16") -> str:
    """The dtype activations (and an `auto` KV cache) are in. FP8 weights are a quantization: vLLM
    still computes in the model dtype (--dtype auto = the checkpoint's torch_dtype), so fp8 → bf16
    unless the checkpoint is fp16; bf16/fp16/fp32 weights compute in their own dtype."""
    return activation_dtype if weight_dtype == "fp8" else weight_dtype


def resolve_kv_dtype(
    kv_cache_dtype: str, weight_dtype: str, activation_dtype: str = "bf16", checkpoint_kv: str | None = None
) -> str:
    """The KV-cache dtype a `--kv-cache-dtype` choice means. `auto` is the model's compute dtype, not
    the weights' (reference engines/README.md §4.5, "auto means the model dtype"; vLLM's
    kv_cache_dtype_str_to_dtype returns model_config.dtype for auto, and SGLang's ModelRunner sets
    kv_cache_dtype = self.dtype unless the checkpoint itself declares an FP8 KV cache), so an FP8
    checkpoint keeps a bf16 cache unless fp8 is asked for — or unless the checkpoint declares its
    cache (`checkpoint_kv`, ModelSpec.checkpoint_kv_dtype: a ModelOpt FP8 checkpoint's
    kv_cache_quant_algo), which vLLM's resolve_kv_cache_dtype_string (vllm/utils/torch_utils.py)
    takes for auto. It applies to the checkpoint's own FP8 weights only."""
    if kv_cache_dtype != "auto":
        return kv_cache_dtype
    if checkpoint_kv and weight_dtype == "fp8":
        return checkpoint_kv
    return compute_dtype(weight_dtype, activation_dtype)


class MoESpec(Frozen):
    """Mixture-of-experts FFN: all experts sit in memory, `experts_per_token` do the work."""

    num_experts: Annotated[int, Field(ge=2, le=4096)] = Field(description="routed experts per MoE layer")
    experts_per_token: Count = Field(description="routed experts each token is sent to (top-k)")
    expert_intermediate_size: Dim = Field(description="FFN width of one routed expert")
    shared_expert_intermediate_size: Annotated[int, Field(ge=0, le=1_048_576)] = Field(
        0, description="total FFN width of the always-on shared expert(s); 0 when there are none"
    )
    first_dense_layers: Annotated[int, Field(ge=0, le=100_000)] = Field(
        0, description="leading layers with a dense FFN instead of experts (DeepSeek first_k_dense_replace)"
    )
    moe_layer_step: Annotated[int, Field(ge=1, le=1000)] = Field(
        1, description="after the dense prefix, layer i is MoE when (i + 1) % step == 0 (Llama-4 interleave)"
    )

    @model_validator(mode="after")
    def _topk_within_experts(self) -> MoESpec:
        if self.experts_per_token > self.num_experts:
            raise ValueError(
                f"experts_per_token ({self.experts_per_token}) exceeds num_experts ({self.num_experts})"
            )
        return self

    def is_moe_layer(self, index: int) -> bool:
        return index >= self.first_dense_layers and (index + 1) % self.moe_layer_step == 0


class MLASpec(Frozen):
    """Multi-head latent attention (DeepSeek-V2/V3): the KV cache holds one latent vector per token."""

    kv_lora_rank: Dim = Field(description="width of the compressed KV latent")
    qk_rope_head_dim: Dim = Field(description="rotary part of each query/key head")
    qk_nope_head_dim: Dim = Field(description="non-rotary part of each query/key head")
    v_head_dim: Dim = Field(description="value head width")
    q_lora_rank: Annotated[int, Field(ge=0, le=1_048_576)] = Field(
        0, description="width of the compressed query; 0 means queries are not compressed"
    )

    @property
    def cache_width(self) -> int:
        """Elements cached per token per layer: latent + decoupled rotary key (576 on DeepSeek-V3)."""
        return self.kv_lora_rank + self.qk_rope_head_dim


class ModelSpec(Frozen):
    """A decoder-only transformer's shape."""

    name: Name = Field(description="model name as people call it, e.g. Llama-3.1-70B")
    architecture: Name = Field(description="Hugging Face architectures[0], e.g. LlamaForCausalLM")
    num_layers: Annotated[int, Field(ge=1, le=10_000)] = Field(description="decoder layers")
    hidden_size: Dim = Field(description="model (residual stream) width")
    num_attention_heads: Annotated[int, Field(ge=1, le=4096)] = Field(description="query heads")
    num_kv_heads: Annotated[int, Field(ge=1, le=4096)] = Field(description="key/value heads (GQA groups)")
    head_dim: Dim = Field(description="width of one attention head")
    intermediate_size: Dim = Field(description="FFN width of a dense layer")
    vocab_size: Annotated[int, Field(ge=1, le=10_000_000)] = Field(description="vocabulary entries")
    max_position_embeddings: Annotated[int, Field(ge=1, le=100_000_000)] = Field(
        description="longest context the model serves, in tokens (after RoPE scaling, as vLLM derives max_model_len)"
    )
    gated_mlp: bool = Field(True, description="gate+up+down (SwiGLU/GeGLU) rather than up+down")
    parallel_attn_mlp: bool = Field(
        False,
        description="attention and MLP read the same input and are summed (Falcon); one all-reduce per layer",
    )
    tie_word_embeddings: bool = Field(False, description="lm_head shares the embedding matrix")
    sliding_window_tokens: Annotated[int, Field(ge=1)] | None = Field(
        None, description="attention window of windowed layers, if any (KV estimates are then an upper bound)"
    )
    dtype: WeightDtype = Field("bf16", description="dtype the weights are stored and served in")
    activation_dtype: ActivationDtype = Field(
        "bf16",
        description="dtype fp8 weights compute in and an `auto` KV cache is kept in: the checkpoint's "
        "torch_dtype (vLLM --dtype auto); fp16 by default for fp16 weights. Other weights compute in their own dtype",
    )
    checkpoint_kv_dtype: Literal["fp8"] | None = Field(
        None,
        description="KV-cache dtype the checkpoint declares (ModelOpt kv_cache_quant_algo FP8): what vLLM "
        "and SGLang keep the cache in under --kv-cache-dtype auto when serving its FP8 weights",
    )
    linear_bias: Literal["none", "qkv", "all"] | None = Field(
        None,
        description="biases of the linear layers: none, on the QKV projection only (Qwen2), on all of "
        "them; null: not recorded (Megatron-LM then reads them from the checkpoint's args)",
    )
    moe: MoESpec | None = Field(None, description="mixture-of-experts FFN, if any")
    mla: MLASpec | None = Field(None, description="multi-head latent attention, if used")
    source: str = Field("", description="where these numbers came from")
    hf_id: HfRepoId | None = Field(
        None,
        description="Hugging Face repo id of the checkpoint (org/name): what the engines load by default",
    )
    hf_aliases: tuple[HfRepoId, ...] = Field(
        (), strict=False, description="other repo ids with this exact shape (e.g. the -Instruct checkpoint)"
    )
    notes: tuple[str, ...] = Field((), strict=False, description="warnings raised while reading the spec")

    @model_validator(mode="before")
    @classmethod
    def _fp16_computes_in_fp16(cls, data: object) -> object:
        """An fp16 checkpoint computes in fp16 even when served with fp8 weights (vLLM --dtype auto)."""
        if isinstance(data, dict) and data.get("dtype") == "fp16" and "activation_dtype" not in data:
            return {**data, "activation_dtype": "fp16"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.num_kv_heads > self.num_attention_heads:
            raise ValueError(
                f"num_kv_heads ({self.num_kv_heads}) exceeds num_attention_heads ({self.num_attention_heads})"
            )
        if self.mla is None and self.num_attention_heads % self.num_kv_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) is not a multiple of "
                f"num_kv_heads ({self.num_kv_heads}); GQA needs whole query groups"
            )
        if self.moe and self.moe.first_dense_layers > self.num_layers:
            raise ValueError(
                f"moe.first_dense_layers ({self.moe.first_dense_layers}) exceeds num_layers ({self.num_layers})"
            )
        return self

    # ---- derived shapes -------------------------------------------------------------
    @property
    def compute_dtype(self) -> str:
        """What the engine computes in: the activation dtype for fp8 weights, else the weight dtype."""
        return compute_dtype(self.dtype, self.activation_dtype)

    @property
    def allreduces_per_layer(self) -> int:
        """TP all-reduces per layer: after attention-out and after MLP-down, or one for Falcon's sum."""
        return 1 if self.parallel_attn_mlp else 2

    @property
    def num_moe_layers(self) -> int:
        return sum(self.is_moe_layer(i) for i in range(self.num_layers)) if self.moe else 0

    @property
    def has_dense_mlp(self) -> bool:
        return self.num_moe_layers < self.num_layers

    def is_moe_layer(self, index: int) -> bool:
        return bool(self.moe and self.moe.is_moe_layer(index))
