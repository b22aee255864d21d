"""Hugging Face `config.json` → ModelSpec, resolving fields the way vLLM does.

KV heads follow vLLM 0.33 exactly (reference/engines/README.md §4.2, from
`vllm/transformers_utils/config.py:57-63` and `model_arch_config_convertor.py:507-523`):
a Falcon (falcon / RefinedWeb / RefinedWebModel) with `multi_query` and without
`new_decoder_architecture` has 1 KV head (checked first: old configs also carry n_head_kv);
otherwise the first present of n_head_kv, num_kv_heads, num_key_value_heads,
multi_query_group_num, num_attention_groups; otherwise as many KV heads as query heads.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, show_value
from .hf_dtype import hf_dtypes

# HF field names, in the order they are tried, for each ModelSpec field.
ALIASES: dict[str, tuple[str, ...]] = {
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim"),
    "num_attention_heads": ("num_attention_heads", "n_head", "n_heads", "num_heads"),
    "intermediate_size": ("intermediate_size", "ffn_dim", "n_inner", "ffn_hidden_size"),
    "vocab_size": ("vocab_size", "padded_vocab_size"),
}
# vLLM derives max_model_len from the smallest of these (vllm/config/model.py:2545-2660).
POSITION_FIELDS = (
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "model_max_length",
    "max_target_positions",
    "max_sequence_length",
    "max_seq_length",
    "seq_len",
)
# RoPE types whose `factor` vLLM 0.33 does not multiply into max_model_len.
ROPE_NOT_EXTENDING = ("su", "longrope", "llama3", "yarn", "deepseek_yarn")
KV_FIELDS = (
    "n_head_kv",
    "num_kv_heads",
    "num_key_value_heads",
    "multi_query_group_num",
    "num_attention_groups",
)
FALCON_TYPES = ("falcon", "RefinedWeb", "RefinedWebModel")

# model_type → what the config does not say. `ffn_x_hidden`: FFN width when the config omits it.
FAMILIES: dict[str, dict[str, Any]] = {
    "llama": {},
    "llama4": {},
    "llama4_text": {},
    "mistral": {},
    "mixtral": {},
    "qwen2": {},
    "qwen2_moe": {},
    "qwen3": {},
    "qwen3_moe": {},
    "gemma": {"tie": True},
    "gemma2": {"tie": True},
    "phi3": {},
    "minicpm": {},
    "olmo2": {},
    "gpt_oss": {},
    "minimax_m2": {},
    "deepseek_v2": {},
    "deepseek_v3": {},
    "falcon": {"gated": False, "tie": True, "ffn_x_hidden": 4},
    "RefinedWeb": {"gated": False, "tie": True, "ffn_x_hidden": 4},
    "RefinedWebModel": {"gated": False, "tie": True, "ffn_x_hidden": 4},
    "gpt_neox": {"gated": False},
    "opt": {"gated": False, "tie": True},
    "gpt2": {"gated": False, "tie": True, "ffn_x_hidden": 4},
    "gpt_bigcode": {"gated": False, "tie": True, "ffn_x_hidden": 4},
    "starcoder2": {"gated": False, "tie": True},
    # n_inner / intermediate_size null means 4 x hidden in these (transformers' GPTJMLP, CodeGenMLP,
    # GPTNeoMLP: `config.n_inner if config.n_inner is not None else 4 * embed_dim`; BloomMLP: 4 x hidden).
    "gptj": {"gated": False, "tie": False, "ffn_x_hidden": 4},
    "codegen": {"gated": False, "tie": False, "ffn_x_hidden": 4},
    "gpt_neo": {"gated": False, "tie": True, "ffn_x_hidden": 4},
    "bloom": {"gated": False, "tie": True, "ffn_x_hidden": 4},
}
# model_type → the linear layers' biases when the config has no attention_bias / mlp_bias (their
# transformers modeling files: Qwen2's q/k/v projections carry a bias, the others none).
LINEAR_BIAS = {
    **dict.fromkeys(("llama", "llama4", "llama4_text", "mistral", "mixtral", "qwen3", "qwen3_moe"), "none"),
    **dict.fromkeys(("gemma", "gemma2", "phi3", "olmo2", "deepseek_v2", "deepseek_v3"), "none"),
    "qwen2": "qkv",
    "qwen2_moe": "qkv",
}
MLA_DIMS = ("kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")


def _first(cfg: dict, keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for k in keys:
        if cfg.get(k) is not None:
            return k, cfg[k]
    return None, None


def _positive_int(cfg: dict, key: str, file: str, where: str = "", minimum: int = 1) -> int:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"{show_value(value)} is not usable",
            file=file,
            field=where + key,
            expected=f"an integer >= {minimum}",
        )
    return value


def _mapping(cfg: dict, key: str, file: str, where: str = "") -> dict | None:
    """An optional nested object (text_config, rope_scaling): absent, or a mapping."""
    value = cfg.get(key)
    if value is not None and not isinstance(value, dict):
        raise ConfigError(
            f"{show_value(value)} is not a mapping", file=file, field=where + key, expected="an object"
        )
    return value


def _optional_int(cfg: dict, key: str, file: str, where: str, minimum: int) -> int | None:
    return None if cfg.get(key) is None else _positive_int(cfg, key, file, where, minimum)


def resolve_kv_heads(cfg: dict, model_type: str, num_heads: int) -> tuple[int, str]:
    """Total KV heads as vLLM computes them, and the field (or rule) that decided it."""
    if model_type in FALCON_TYPES and cfg.get("multi_query") and not cfg.get("new_decoder_architecture"):
        return 1, "multi_query"
    key, value = _first(cfg, KV_FIELDS)
    if key is None:
        return num_heads, "num_attention_heads (no KV-head field)"
    return value, key


def spec_fields_from_hf(raw: dict, file: str, name: str) -> dict[str, Any]:
    """The ModelSpec fields of an HF config (not yet validated), with `notes` for anything guessed."""
    archs = raw.get("architectures") or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise ConfigError(f"{show_value(archs)} is not a list of names", file=file, field="architectures")
    cfg, where = raw, ""
    if _mapping(raw, "text_config", file):  # multimodal wrapper (Llama-4): shapes live in text_config
        cfg, where = raw["text_config"], "text_config."
    model_type = str(cfg.get("model_type") or raw.get("model_type") or "")
    architecture = archs[0] if archs else (model_type or "unknown")
    family = FAMILIES.get(model_type)
    notes: list[str] = []
    if family is None:
        family = {}
        notes.append(
            f"architecture {architecture} (model_type {model_type or 'missing'}) is not one tpplan knows; "
            "planned from its standard config fields"
        )

    found: dict[str, Any] = {}
    missing: list[str] = []
    for spec_field, keys in ALIASES.items():
        key, _ = _first(cfg, keys)
        if key is None:
            if spec_field == "intermediate_size" and "ffn_x_hidden" in family and "hidden_size" in found:
                found[spec_field] = family["ffn_x_hidden"] * found["hidden_size"]
                continue
            missing.append(" or ".join(keys[:3]))
            continue
        found[spec_field] = _positive_int(cfg, key, file, where)
    if missing:
        raise ConfigError(
            "missing " + ", ".join(missing),
            file=file,
            field=where.rstrip(".") or None,
            expected="the standard Hugging Face shape fields",
        )

    found["max_position_embeddings"] = _max_model_len(cfg, model_type, file, where, notes)
    if cfg.get("intermediate_size_mlp") is not None:  # Llama-4: dense layers are wider than experts
        found["intermediate_size"] = _positive_int(cfg, "intermediate_size_mlp", file, where)
    heads, hidden = found["num_attention_heads"], found["hidden_size"]
    kv, kv_key = resolve_kv_heads(cfg, model_type, heads)
    if kv_key in KV_FIELDS:
        kv = _positive_int(cfg, kv_key, file, where)

    fields: dict[str, Any] = dict(found, name=name, architecture=architecture, num_kv_heads=kv)
    fields["gated_mlp"] = family.get("gated", True)
    tie = next(
        (c["tie_word_embeddings"] for c in (cfg, raw) if c.get("tie_word_embeddings") is not None), None
    )
    fields["tie_word_embeddings"] = bool(
        family.get("tie", False) if tie is None else tie
    )  # null: the default
    # vLLM's Falcon sums attention and MLP before one all-reduce (reduce_row_parallel_results).
    fields["parallel_attn_mlp"] = model_type in FALCON_TYPES and bool(
        cfg.get("parallel_attn", True) or cfg.get("new_decoder_architecture", False)
    )
    fields.update(hf_dtypes(raw, cfg, file, where, notes))

    window = cfg.get("sliding_window")
    if (
        isinstance(window, int)
        and not isinstance(window, bool)
        and window > 0
        and cfg.get("use_sliding_window", True)
    ):
        fields["sliding_window_tokens"] = window

    mla = _mla(cfg, file, where)
    if mla:
        fields["mla"] = mla
        fields["head_dim"] = mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"]
    else:
        head_dim = cfg.get("head_dim")
        if head_dim is None:
            if hidden % heads:
                raise ConfigError(
                    f"hidden_size ({hidden}) is not divisible by num_attention_heads ({heads}) and head_dim is not set",
                    file=file,
                    field=where + "head_dim",
                    expected="head_dim, or hidden_size a multiple of the heads",
                )
            head_dim = hidden // heads
        fields["head_dim"] = head_dim
    moe = _moe(cfg, file, where, notes)
    if moe:
        fields["moe"] = moe
    bias = linear_bias(cfg, model_type)
    if bias:
        fields["linear_bias"] = bias
    fields["notes"] = tuple(notes)
    return fields


def linear_bias(cfg: dict, model_type: str) -> str | None:
    """none / qkv / all from attention_bias and mlp_bias (Llama-style configs), else the family's
    (LINEAR_BIAS); None when only some layers have one or the family is unknown."""
    attention, mlp = cfg.get("attention_bias"), cfg.get("mlp_bias")
    if attention is None and mlp is None:
        return LINEAR_BIAS.get(model_type)
    if not attention and not mlp:
        return "qkv" if LINEAR_BIAS.get(model_type) == "qkv" else "none"
    return "all" if attention and mlp else None


def _max_model_len(cfg: dict, model_type: str, file: str, where: str, notes: list[str]) -> int:
    """The context length vLLM serves by default: the smallest length field, extended by the RoPE
    scaling factor unless the RoPE type already accounts for it (vllm/config/model.py:2545-2660)."""
    lengths = [_positive_int(cfg, k, file, where) for k in POSITION_FIELDS if cfg.get(k) is not None]
    rope = _mapping(cfg, "rope_scaling", file, where)
    if not lengths:
        notes.append("no max_position_embeddings or similar field; 2048 tokens assumed, as vLLM does")
        return 2048
    length = min(lengths)
    if rope and not model_type.startswith("gemma3"):
        kind = rope.get("rope_type") or rope.get("type")
        factor = rope.get("factor")
        if kind not in ROPE_NOT_EXTENDING and isinstance(factor, int | float) and factor > 1:
            notes.append(f"max_model_len {length} x RoPE {kind} factor {factor:g}, as vLLM derives it")
            length = int(length * factor)
    return length


def _mla(cfg: dict, file: str, where: str) -> dict[str, Any] | None:
    """DeepSeek MLA dimensions; a config with kv_lora_rank must carry all of them."""
    if cfg.get("kv_lora_rank") is None:
        return None
    missing = [k for k in MLA_DIMS if cfg.get(k) is None]
    if missing:
        raise ConfigError(
            f"has kv_lora_rank (multi-head latent attention) but no {', '.join(missing)}",
            file=file,
            field=where + missing[0],
            expected="all of " + ", ".join(MLA_DIMS),
        )
    mla = {k: _positive_int(cfg, k, file, where) for k in MLA_DIMS}
    mla["q_lora_rank"] = _optional_int(cfg, "q_lora_rank", file, where, 0) or 0
    return mla


def _moe(cfg: dict, file: str, where: str, notes: list[str]) -> dict[str, Any] | None:
    """Routed experts as vLLM builds them. Each count is checked under the config's own field name."""

    def num(key: str, minimum: int = 1) -> int | None:
        return _optional_int(cfg, key, file, where, minimum)

    experts_key, _ = _first(cfg, ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"))
    if experts_key is None:
        return None
    experts = num(experts_key, 0)
    if (
        not experts
    ):  # Qwen-MoE builds a dense MLP when num_experts is 0 (`num_experts > 0` in vLLM's qwen2_moe.py)
        return None
    if experts == 1:
        # vLLM still builds a one-expert MoE layer (router + expert of the MoE width, plus any shared
        # experts), which is not the dense FFN tpplan would otherwise plan from intermediate_size.
        raise ConfigError(
            "1 is a single routed expert; tpplan plans mixture-of-experts layers with 2 or more experts",
            file=file,
            field=where + experts_key,
            expected="an integer >= 2, or 0 / no expert field for a dense model",
        )
    topk_key, _ = _first(
        cfg, ("num_experts_per_tok", "experts_per_token", "moe_topk", "num_selected_experts")
    )
    width_key, _ = _first(cfg, ("moe_intermediate_size", "intermediate_size"))
    moe: dict[str, Any] = {
        "num_experts": experts,
        "experts_per_token": num(topk_key) if topk_key else None,
        "expert_intermediate_size": num(width_key) if width_key else None,
    }
    width = moe["expert_intermediate_size"]
    if num("shared_expert_intermediate_size", 0):  # Qwen2-MoE
        moe["shared_expert_intermediate_size"] = cfg["shared_expert_intermediate_size"]
    elif num("n_shared_experts", 0) and width:  # DeepSeek: n copies of the expert width
        moe["shared_expert_intermediate_size"] = cfg["n_shared_experts"] * width
    elif num("shared_intermediate_size", 0):  # MiniMax
        moe["shared_expert_intermediate_size"] = cfg["shared_intermediate_size"]
    elif cfg.get("model_type") in ("llama4", "llama4_text") and width:
        moe["shared_expert_intermediate_size"] = width  # Llama-4 MoE layers add one shared expert
    if num("first_k_dense_replace", 0):
        moe["first_dense_layers"] = cfg["first_k_dense_replace"]
    # vLLM takes (layer + 1) % step (llama4.py, qwen2_moe.py): a step of 0 does not load there either.
    step = num("interleave_moe_layer_step") or num("decoder_sparse_step") or 1
    if step > 1:
        moe["moe_layer_step"] = step
    freq = num("moe_layer_freq")  # DeepSeek: layer % moe_layer_freq == 0 (deepseek_v2.py)
    if freq not in (None, 1):
        notes.append(f"moe_layer_freq {freq} approximated as every layer being MoE")
    dense_only = cfg.get("mlp_only_layers") or []
    if not isinstance(dense_only, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in dense_only
    ):
        raise ConfigError(
            f"{show_value(dense_only)} is not a list of layer indices",
            file=file,
            field=where + "mlp_only_layers",
            expected="a list of integers >= 0",
        )
    if dense_only:
        if dense_only == list(range(len(dense_only))):
            moe["first_dense_layers"] = len(dense_only)
        else:
            notes.append(
                f"mlp_only_layers {dense_only} treated as MoE layers (only a dense prefix is modelled)"
            )
    return moe
