"""Every malformed or impossible input exits non-zero with ONE line naming the file, the field, the
value and what is valid — never a traceback."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.cli_helpers import run

GOOD_MODEL = {
    "name": "m",
    "architecture": "LlamaForCausalLM",
    "num_layers": 4,
    "hidden_size": 512,
    "num_attention_heads": 8,
    "num_kv_heads": 4,
    "head_dim": 64,
    "intermediate_size": 1408,
    "vocab_size": 8192,
    "max_position_embeddings": 4096,
}


def _model(tmp_path, **changes):
    data = {k: v for k, v in {**GOOD_MODEL, **changes}.items() if v is not ...}
    p = tmp_path / "model.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _profile(tmp_path, mutate):
    from tpplan import bundled

    data = yaml.safe_load((bundled.data_dir("hardware_profiles") / "dgx-h100.yaml").read_text())
    mutate(data)
    p = tmp_path / "prof.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _write(tmp_path, name, content: bytes):
    p = tmp_path / name
    p.write_bytes(content)
    return p


def check_one_line(capsys, args, *needles):
    rc, out, err = run(capsys, *args)
    assert rc != 0, (args, out)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


CANDIDATES = ("candidates",)


def test_missing_model_file(capsys, tmp_path):
    check_one_line(
        capsys, [*CANDIDATES, tmp_path / "nope.yaml", "--profile", "dgx-h100"], "nope.yaml", "no such file"
    )


def test_model_is_a_directory(capsys, tmp_path):
    check_one_line(capsys, [*CANDIDATES, tmp_path, "--profile", "dgx-h100"], "is a directory")


def test_empty_file(capsys, tmp_path):
    p = _write(tmp_path, "e.yaml", b"")
    check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "e.yaml", "is empty")


def test_whitespace_only_file(capsys, tmp_path):
    p = _write(tmp_path, "w.yaml", b"  \n\n  ")
    check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "is empty")


def test_not_utf8(capsys, tmp_path):
    p = _write(tmp_path, "latin.yaml", "name: caf\xe9\n".encode("latin-1"))
    check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "latin.yaml", "not UTF-8", "0xe9")


def test_bad_yaml(capsys, tmp_path):
    p = _write(tmp_path, "bad.yaml", b"name: [unclosed\nnum_layers: 4\n")
    check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "bad.yaml", "invalid YAML", "line")


def test_bad_json(capsys, tmp_path):
    p = _write(tmp_path, "config.json", b'{"num_hidden_layers": 4,}')
    check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "config.json", "invalid JSON", "line 1")


def test_top_level_list(capsys, tmp_path):
    p = _write(tmp_path, "list.yaml", b"- 1\n- 2\n")
    check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "top level is list", "mapping")


def test_missing_field(capsys, tmp_path):
    p = _model(tmp_path, num_layers=...)
    check_one_line(
        capsys,
        [*CANDIDATES, p, "--profile", "dgx-h100"],
        "model.yaml",
        "num_layers",
        "missing",
        "decoder layers",
    )


def test_wrong_type_string(capsys, tmp_path):
    p = _model(tmp_path, num_layers="eighty")
    check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "num_layers", "'eighty'", "integer")


def test_bool_is_not_an_integer(capsys, tmp_path):
    p = _model(tmp_path, hidden_size=True)
    check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "hidden_size", "True")


def test_zero_heads(capsys, tmp_path):
    p = _model(tmp_path, num_attention_heads=0)
    check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "num_attention_heads", "0", ">= 1")


def test_negative_width(capsys, tmp_path):
    p = _model(tmp_path, hidden_size=-512)
    check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "hidden_size", "-512")


def test_unknown_field_typo(capsys, tmp_path):
    p = _model(tmp_path, num_layer=4)
    check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "num_layer", "unknown field")


def test_more_kv_heads_than_heads(capsys, tmp_path):
    p = _model(tmp_path, num_kv_heads=16)
    check_one_line(
        capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "num_kv_heads (16) exceeds num_attention_heads (8)"
    )


def test_heads_not_multiple_of_kv(capsys, tmp_path):
    p = _model(tmp_path, num_kv_heads=3)
    check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "not a multiple of num_kv_heads (3)")


def test_moe_topk_larger_than_experts(capsys, tmp_path):
    p = _model(tmp_path, moe={"num_experts": 4, "experts_per_token": 8, "expert_intermediate_size": 1024})
    check_one_line(
        capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "experts_per_token (8) exceeds num_experts (4)"
    )


def test_hf_config_negative_layers(capsys, tmp_path):
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "num_hidden_layers": -3,
        "hidden_size": 512,
        "num_attention_heads": 8,
        "intermediate_size": 1024,
        "vocab_size": 1000,
    }
    p = _write(tmp_path, "config.json", json.dumps(cfg).encode())
    check_one_line(
        capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "config.json", "num_hidden_layers", "-3", ">= 1"
    )


def test_hf_config_hidden_not_divisible_by_heads(capsys, tmp_path):
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "num_hidden_layers": 2,
        "hidden_size": 500,
        "num_attention_heads": 8,
        "intermediate_size": 1024,
        "vocab_size": 1000,
    }
    p = _write(tmp_path, "config.json", json.dumps(cfg).encode())
    check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "head_dim", "hidden_size (500)")


def test_hf_config_missing_standard_fields(capsys, tmp_path):
    cfg = {"architectures": ["MysteryForCausalLM"], "model_type": "mystery", "width": 512}
    p = _write(tmp_path, "config.json", json.dumps(cfg).encode())
    check_one_line(
        capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "missing num_hidden_layers", "hidden_size"
    )


def test_profile_number_without_source(capsys, tmp_path):
    p = _profile(tmp_path, lambda d: d["gpu"]["memory_gib"].pop("source"))
    check_one_line(
        capsys, [*CANDIDATES, "tiny", "--profile", p], "prof.yaml", "gpu.memory_gib.source", "missing"
    )


def test_profile_zero_memory(capsys, tmp_path):
    p = _profile(tmp_path, lambda d: d["gpu"]["memory_gib"].update(value=0))
    check_one_line(capsys, [*CANDIDATES, "tiny", "--profile", p], "gpu.memory_gib", "out of range", "GiB")


def test_profile_unknown_fabric(capsys, tmp_path):
    p = _profile(tmp_path, lambda d: d["inter_node"].update(kind="carrier-pigeon"))
    check_one_line(
        capsys, [*CANDIDATES, "tiny", "--profile", p], "inter_node.kind", "carrier-pigeon", "ib-ndr"
    )


def test_profile_domain_inconsistent_with_node(capsys, tmp_path):
    p = _profile(tmp_path, lambda d: d["nvlink"].update(domain_size_gpus=3))
    check_one_line(capsys, [*CANDIDATES, "tiny", "--profile", p], "gpus_per_node (8)", "domain_size_gpus (3)")


def test_unknown_bundled_profile(capsys):
    check_one_line(
        capsys, [*CANDIDATES, "tiny", "--profile", "dgx-h1000"], "dgx-h1000", "dgx-h100", "hgx-h200"
    )


def test_zero_gpus(capsys):
    check_one_line(
        capsys, [*CANDIDATES, "tiny", "--profile", "dgx-h100", "--gpus", "0"], "--gpus", "0", ">= 1"
    )


def test_tp_larger_than_the_gpus(capsys):
    check_one_line(
        capsys, [*CANDIDATES, "tiny", "--profile", "dgx-h100", "--tp", "16"], "--tp: 16", "budget (8"
    )


def test_tp_not_a_number(capsys):
    check_one_line(capsys, [*CANDIDATES, "tiny", "--profile", "dgx-h100", "--tp", "2,x"], "--tp", "'x'")


def test_unknown_engine(capsys):
    check_one_line(
        capsys, [*CANDIDATES, "tiny", "--profile", "dgx-h100", "--engine", "tgi"], "--engine", "tgi", "vllm"
    )


def test_unknown_flag(capsys):
    check_one_line(
        capsys, [*CANDIDATES, "tiny", "--profile", "dgx-h100", "--tensor-parallel", "8"], "--tensor-parallel"
    )


def test_zero_max_model_len(capsys):
    check_one_line(
        capsys, [*CANDIDATES, "tiny", "--profile", "dgx-h100", "--max-model-len", "0"], "--max-model-len"
    )


def test_a_budget_larger_than_tpplan_enumerates(capsys):
    check_one_line(
        capsys,
        [*CANDIDATES, "tiny", "--profile", "dgx-h100", "--gpus", "100000"],
        "--gpus: 100000 GPUs is more",
    )


def test_max_model_len_past_the_models_context(capsys):
    """The engines refuse it at load time; tpplan says so before judging any layout."""
    check_one_line(
        capsys,
        [*CANDIDATES, "tiny", "--profile", "dgx-h100", "--max-model-len", "100000"],
        "--max-model-len: 100000 tokens exceed tiny-llama's context (max_position_embeddings 4096)",
    )


@pytest.mark.parametrize("value", ["nan", "1e400"])
def test_profile_non_finite_price(capsys, tmp_path, value):
    p = _profile(tmp_path, lambda d: d["price"]["usd_per_gpu_hour"].update(value=float(value)))
    check_one_line(capsys, [*CANDIDATES, "tiny", "--profile", p], "price.usd_per_gpu_hour")


# ---- HF config.json fields that are optional, odd, or inconsistent -------------------------------
HF_MOE = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "num_hidden_layers": 4,
    "hidden_size": 512,
    "num_attention_heads": 8,
    "num_key_value_heads": 8,
    "intermediate_size": 1024,
    "moe_intermediate_size": 256,
    "n_routed_experts": 8,
    "num_experts_per_tok": 2,
    "n_shared_experts": 1,
    "kv_lora_rank": 64,
    "qk_nope_head_dim": 32,
    "qk_rope_head_dim": 16,
    "v_head_dim": 32,
    "vocab_size": 1000,
}


def _hf_variant(tmp_path, **changes):
    cfg = {k: v for k, v in {**HF_MOE, **changes}.items() if v is not ...}
    return _write(tmp_path, "config.json", json.dumps(cfg).encode())


@pytest.mark.parametrize("field", ["qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"])
def test_hf_mla_config_missing_a_dimension(capsys, tmp_path, field):
    p = _hf_variant(tmp_path, **{field: ...})
    check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "config.json", field, "kv_lora_rank")


def test_hf_mla_dimension_not_an_integer(capsys, tmp_path):
    p = _hf_variant(tmp_path, qk_rope_head_dim="64")
    check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "qk_rope_head_dim", "'64'", ">= 1")


def test_hf_shared_experts_not_a_number_names_the_config_field(capsys, tmp_path):
    p = _hf_variant(tmp_path, n_shared_experts="x")
    line = check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "n_shared_experts", "'x'")
    assert "xxxx" not in line and "shared_expert_intermediate_size" not in line


@pytest.mark.parametrize("field", ["decoder_sparse_step", "interleave_moe_layer_step", "moe_layer_freq"])
def test_hf_moe_layer_step_zero(capsys, tmp_path, field):
    p = _hf_variant(tmp_path, **{field: 0})
    check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], field, "0", ">= 1")


@pytest.mark.parametrize("field", ["n_routed_experts", "num_experts", "num_local_experts"])
def test_hf_single_routed_expert_is_refused_not_planned_dense(capsys, tmp_path, field):
    p = _hf_variant(tmp_path, **{"n_routed_experts": ..., field: 1})
    check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], field, "single routed expert", ">= 2")


def test_hf_negative_expert_count(capsys, tmp_path):
    p = _hf_variant(tmp_path, n_routed_experts=-4)
    check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "n_routed_experts", "-4")


def test_hf_mlp_only_layers_not_a_list(capsys, tmp_path):
    p = _hf_variant(tmp_path, mlp_only_layers=3)
    check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "mlp_only_layers", "3", "list")


@pytest.mark.parametrize(
    ("field", "value"), [("rope_scaling", "yarn"), ("rope_scaling", [1, 2]), ("text_config", "llama")]
)
def test_hf_nested_object_not_a_mapping(capsys, tmp_path, field, value):
    p = _hf_variant(tmp_path, **{field: value})
    check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], f"{field}:", "not a mapping")


def test_hf_fp8_quantization_refuses_unsized_methods_in_one_line(capsys, tmp_path):
    p = _hf_variant(tmp_path, quantization_config={"quant_method": "awq", "bits": 4})
    check_one_line(
        capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "quantization_config.quant_method", "'awq'", "fp8"
    )


def test_hf_unknown_torch_dtype(capsys, tmp_path):
    p = _hf_variant(tmp_path, torch_dtype="int4")
    check_one_line(capsys, [*CANDIDATES, p, "--profile", "dgx-h100"], "torch_dtype", "'int4'", "bfloat16")
