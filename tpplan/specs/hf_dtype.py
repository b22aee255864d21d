"""A Hugging Face config's weight and activation dtypes, as vLLM reads them.

- Activations: `torch_dtype` (or `dtype`), vLLM's `--dtype auto`; float32 is served as bf16
  (vllm/config/model.py `_resolve_auto_dtype` downcasts float32 to the platform's first dtype, bf16
  on Ampere and later).
- Weights: `quantization_config.quant_method` when present (vLLM's ModelConfig._verify_quantization
  reads this field to pick its quantization), else the activation dtype.
- KV cache: a ModelOpt checkpoint may declare an FP8 cache (kv_cache_quant_algo), which vLLM keeps
  under --kv-cache-dtype auto; other methods leave auto at the activation dtype.

tpplan sizes weights by one byte width per parameter (ModelSpec.dtype). FP8 checkpoints map onto
that; 4-bit and mixed schemes (awq, gptq, mxfp4, compressed-tensors, ...) pack weights with group
scales and keep some modules unquantized, so tpplan refuses them rather than plan them as bf16.
"""

from __future__ import annotations

from ..errors import ConfigError, show_value

# torch_dtype → (activation dtype, note when it is not served as written).
TORCH_DTYPES: dict[str, tuple[str, str]] = {
    "bfloat16": ("bf16", ""),
    "float16": ("fp16", ""),
    "half": ("fp16", ""),
    "float32": ("bf16", "config dtype float32 is served as bf16 (vLLM's dtype=auto downcasts float32)"),
    "float": ("bf16", "config dtype float32 is served as bf16 (vLLM's dtype=auto downcasts float32)"),
}
# quant_method → weight dtype. fp8: block- or channel-scaled e4m3 weights (DeepSeek-V3, Qwen3-FP8);
# fbgemm_fp8: Meta's per-channel FP8 (Llama-3.1-405B-Instruct-FP8). Both store one byte per weight.
FP8_METHODS = ("fp8", "fbgemm_fp8")
FP8_NOTE = (
    "quantization_config.quant_method {method}: weights planned at 1 byte each; vLLM keeps the "
    "embeddings, norms and LM head in {act}, so the weights are slightly underestimated"
)


def hf_dtypes(raw: dict, cfg: dict, file: str, where: str, notes: list[str]) -> dict[str, str]:
    """ModelSpec `dtype` and `activation_dtype` of an HF config (`cfg` is `raw` or its text_config)."""
    key, text = "torch_dtype", "bfloat16"
    for src, k, w in ((cfg, "torch_dtype", where), (cfg, "dtype", where), (raw, "torch_dtype", "")):
        if src.get(k) is not None:
            key, text = w + k, src[k]
            break
    if not isinstance(text, str) or text not in TORCH_DTYPES:
        raise ConfigError(
            f"{show_value(text)} is not a dtype tpplan can plan",
            file=file,
            field=key,
            expected=", ".join(TORCH_DTYPES) + " (quantized checkpoints declare quantization_config)",
        )
    activation, note = TORCH_DTYPES[text]
    if note:
        notes.append(note)
    out = {"dtype": activation, "activation_dtype": activation}
    quant = raw.get("quantization_config", cfg.get("quantization_config"))
    if quant is None:
        return out
    if not isinstance(quant, dict):
        raise ConfigError(
            f"{show_value(quant)} is not a mapping",
            file=file,
            field="quantization_config",
            expected="an object",
        )
    method = quant.get("quant_method")
    if method in FP8_METHODS:
        notes.append(FP8_NOTE.format(method=method, act=activation))
        return {**out, "dtype": "fp8"}
    if isinstance(method, str) and method.startswith("modelopt"):
        return {**out, **_modelopt(quant, file, activation, notes)}
    raise ConfigError(
        f"{show_value(method)} is not a quantization tpplan can size (its weights are not one byte width "
        "per parameter, so planning them as bf16 or fp8 would be wrong)",
        file=file,
        field="quantization_config.quant_method",
        expected=f"{' or '.join(FP8_METHODS)} or modelopt with quant_algo FP8 (FP8 weights), or no "
        "quantization_config (weights in torch_dtype)",
    )


def _modelopt(quant: dict, file: str, activation: str, notes: list[str]) -> dict[str, str]:
    """A ModelOpt checkpoint (NVIDIA's): FP8 weights when quant_algo is FP8, and the KV cache it
    declares — vLLM reads kv_cache_scheme or kv_cache_quant_algo from quantization_config or its
    `quantization` block (vllm/utils/torch_utils.py get_kv_cache_quant_algo_string) and keeps an
    `auto` cache in FP8 when it says FP8 (or {type: float, num_bits: 8, dynamic: false})."""
    inner = quant.get("quantization") if isinstance(quant.get("quantization"), dict) else quant
    algo = inner.get("quant_algo", quant.get("quant_algo"))
    if not isinstance(algo, str) or algo.upper() != "FP8":
        raise ConfigError(
            f"{show_value(algo)} is not a ModelOpt quantization tpplan can size (its weights are not one "
            "byte per parameter)",
            file=file,
            field="quantization_config.quant_algo",
            expected="FP8 (NVFP4 and mixed-precision ModelOpt checkpoints are not planned)",
        )
    notes.append(FP8_NOTE.format(method="modelopt (quant_algo FP8)", act=activation))
    kv = next(
        (
            c.get(k)
            for k in ("kv_cache_scheme", "kv_cache_quant_algo")
            for c in (inner, quant)
            if c.get(k) is not None
        ),
        None,
    )
    if isinstance(kv, dict):
        kv = "fp8" if (kv.get("type"), kv.get("num_bits"), kv.get("dynamic")) == ("float", 8, False) else None
    if isinstance(kv, str) and kv.lower() == "fp8":
        notes.append(
            "the checkpoint declares an FP8 KV cache: --kv-cache-dtype auto keeps it in fp8 (as vLLM)"
        )
        return {"dtype": "fp8", "checkpoint_kv_dtype": "fp8"}
    return {"dtype": "fp8"}
