"""Quantized HF checkpoints and the `auto` KV-cache dtype, as vLLM reads them.

vLLM reads `quantization_config.quant_method` for the weights and keeps an `auto` KV cache in the
model's compute dtype (reference engines/README.md §4.5), so an FP8 checkpoint has a bf16 cache.
"""

from __future__ import annotations

import json

import pytest

from tests.cli_helpers import run
from tests.hf_configs import DSV3
from tpplan import io, memory
from tpplan.candidates import judge
from tpplan.errors import ConfigError
from tpplan.records import Layout
from tpplan.search.space import dtype_pairs
from tpplan.specs import Workload, resolve_kv_dtype


def _write(tmp_path, cfg, name="config.json"):
    p = tmp_path / name
    p.write_text(json.dumps(cfg))
    return p


def test_fp8_checkpoint_is_planned_with_fp8_weights(tmp_path):
    m = io.load_model(_write(tmp_path, DSV3))
    assert (m.dtype, m.activation_dtype, m.compute_dtype) == ("fp8", "bf16", "bf16")
    assert any("quant_method fp8" in n for n in m.notes)


def test_fp8_deepseek_v3_fits_eight_h200(capsys, tmp_path):
    """vLLM serves DeepSeek-V3 FP8 at TP=8 on 8×H200: ~79 GiB of weights per GPU, not 158."""
    rc, out, err = run(
        capsys, "candidates", _write(tmp_path, DSV3), "--profile", "hgx-h200", "--tp", "8", "--json"
    )
    assert rc == 0, err
    # plain TP, then the EP / DP-attention layouts an MoE model is also listed with
    (c,) = [r for r in json.loads(out) if r["ep"] == r["dp_attention"] == 1]
    assert c["fits"], c
    assert 75 < c["weights_gib_per_gpu"] < 85, c["weights_gib_per_gpu"]


@pytest.mark.parametrize("method", ["awq", "gptq", "mxfp4", "compressed-tensors", "bitsandbytes"])
def test_quantizations_tpplan_cannot_size_are_refused(tmp_path, method):
    cfg = {**DSV3, "quantization_config": {"quant_method": method, "bits": 4}}
    with pytest.raises(ConfigError) as e:
        io.load_model(_write(tmp_path, cfg))
    text = str(e.value)
    assert "quantization_config.quant_method" in text and repr(method) in text and "fp8" in text


def test_quantization_config_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="quantization_config: 'fp8' is not a mapping"):
        io.load_model(_write(tmp_path, {**DSV3, "quantization_config": "fp8"}))


@pytest.mark.parametrize("dtype", ["int4", "float8_e4m3fn", 16])
def test_unknown_torch_dtype_is_refused_not_planned_as_bf16(tmp_path, dtype):
    with pytest.raises(ConfigError) as e:
        io.load_model(_write(tmp_path, {**DSV3, "torch_dtype": dtype, "quantization_config": None}))
    assert "torch_dtype" in str(e.value) and repr(dtype) in str(e.value) and "bfloat16" in str(e.value)


def test_fp16_checkpoint_keeps_fp16_activations_under_fp8_weights(tmp_path):
    cfg = {**DSV3, "torch_dtype": "float16"}
    m = io.load_model(_write(tmp_path, cfg))
    assert (m.dtype, m.compute_dtype) == ("fp8", "fp16")
    assert resolve_kv_dtype("auto", m.dtype, m.activation_dtype) == "fp16"


def test_every_reference_config_reads_its_dtypes(reference):
    """None of the reference configs carries quantization_config (gpt-oss's mxfp4 block is stripped
    there), so each plans in its torch_dtype; float32 (OLMo-2) is served as bf16."""
    for path in sorted((reference / "models" / "hf_configs").glob("*.json")):
        raw = json.loads(path.read_text())
        m = io.load_model(path)
        want = {"float16": "fp16"}.get(raw.get("torch_dtype"), "bf16")
        assert (m.dtype, m.activation_dtype) == (want, want), path.name


# ---- KV cache dtype `auto` --------------------------------------------------------------
def test_auto_kv_cache_follows_activations_not_fp8_weights():
    """Llama-3.1-70B with fp8 weights: `auto` keeps the bf16 cache (40,960 B/token at TP=8,
    reference §4.5); only an explicit fp8 cache halves it."""
    m = io.load_model("llama-3.1-70b").model_copy(update={"dtype": "fp8"})
    bf16 = memory.kv_bytes_per_token(m, 8, 80, "bf16")
    assert bf16 == 40_960
    auto = Workload(input_tokens=1, output_tokens=1, dtype="fp8", kv_cache_dtype="auto").kv_dtype
    assert memory.kv_bytes_per_token(m, 8, 80, auto) == bf16
    fp8 = Workload(input_tokens=1, output_tokens=1, dtype="fp8", kv_cache_dtype="fp8").kv_dtype
    assert memory.kv_bytes_per_token(m, 8, 80, fp8) == bf16 / 2


def test_judge_auto_kv_matches_an_explicit_bf16_cache():
    m = io.load_model("llama-3.1-70b").model_copy(update={"dtype": "fp8"})
    profile = io.load_profile("dgx-h100")
    lay = Layout(tp=8, pp=1, replicas=1)
    auto = judge(m, profile, layout=lay, engine="vllm", budget_gpus=8)
    bf16 = judge(m, profile, layout=lay, engine="vllm", budget_gpus=8, kv_dtype="bf16")
    fp8 = judge(m, profile, layout=lay, engine="vllm", budget_gpus=8, kv_dtype="fp8")
    assert auto.kv_cache_tokens == bf16.kv_cache_tokens
    assert fp8.kv_cache_tokens in (2 * auto.kv_cache_tokens, 2 * auto.kv_cache_tokens + 1)


def test_search_auto_pairs_fp8_weights_with_the_activation_cache():
    assert dtype_pairs(["fp8"], ["auto"], supports_fp8=True, engine="vllm") == (("fp8", "bf16"),)
    assert dtype_pairs(["fp8"], ["auto"], supports_fp8=True, engine="vllm", activation_dtype="fp16") == (
        ("fp8", "fp16"),
    )
    assert dtype_pairs(["fp8", "bf16"], ["auto", "fp8"], supports_fp8=True, engine="vllm") == (
        ("fp8", "bf16"),
        ("fp8", "fp8"),
        ("bf16", "bf16"),
        ("bf16", "fp8"),
    )


# ---- a checkpoint that declares its KV cache ----------------------------------------------
# Llama-3.1-8B's shape (meta-llama/Llama-3.1-8B-Instruct config.json), as NVIDIA's FP8 exports keep it
LLAMA31_8B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "torch_dtype": "bfloat16",
}


def _modelopt(kv=None, inner=False):
    quant = {"quant_algo": "FP8", **({"kv_cache_quant_algo": kv} if kv else {})}
    block = {"quant_method": "modelopt", **({"quantization": quant} if inner else quant)}
    return {**LLAMA31_8B, "quantization_config": block}


@pytest.mark.parametrize("inner", [False, True])
def test_modelopt_fp8_checkpoint_with_fp8_kv_keeps_an_fp8_cache_under_auto(tmp_path, inner):
    """vLLM's resolve_kv_cache_dtype_string: auto + ModelOpt kv_cache_quant_algo FP8 -> fp8 cache."""
    m = io.load_model(_write(tmp_path, _modelopt("FP8", inner)))
    assert (m.dtype, m.checkpoint_kv_dtype) == ("fp8", "fp8")
    assert resolve_kv_dtype("auto", m.dtype, m.activation_dtype, m.checkpoint_kv_dtype) == "fp8"
    assert resolve_kv_dtype("bf16", m.dtype, m.activation_dtype, m.checkpoint_kv_dtype) == "bf16"
    w = Workload(input_tokens=1, output_tokens=1, dtype="fp8")
    assert w.kv_dtype_of(m) == "fp8" and w.kv_dtype == "bf16"
    profile = io.load_profile("dgx-h100")
    auto = judge(m, profile, layout=Layout(tp=1), engine="vllm", budget_gpus=1)
    bf16 = judge(m, profile, layout=Layout(tp=1), engine="vllm", budget_gpus=1, kv_dtype="bf16")
    assert auto.kv_cache_tokens >= 2 * bf16.kv_cache_tokens - 1
    assert dtype_pairs(
        ["fp8"],
        ["auto"],
        supports_fp8=True,
        engine="vllm",
        activation_dtype="bf16",
        checkpoint_kv=m.checkpoint_kv_dtype,
    ) == (("fp8", "fp8"),)


def test_modelopt_without_a_kv_scheme_keeps_the_activation_cache(tmp_path):
    m = io.load_model(_write(tmp_path, _modelopt()))
    assert (m.dtype, m.checkpoint_kv_dtype) == ("fp8", None)
    assert Workload(input_tokens=1, output_tokens=1, dtype="fp8").kv_dtype_of(m) == "bf16"


def test_modelopt_nvfp4_is_refused_naming_the_field(tmp_path):
    cfg = _modelopt("FP8")
    cfg["quantization_config"]["quant_algo"] = "NVFP4"
    with pytest.raises(ConfigError) as e:
        io.load_model(_write(tmp_path, cfg))
    assert "quantization_config.quant_algo" in str(e.value) and "'NVFP4'" in str(e.value)
