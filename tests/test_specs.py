"""ModelSpec from tpplan YAML and from HF config.json, checked against the reference shapes."""

from __future__ import annotations

import csv
import json

import pytest

from tests.hf_configs import DSV3, FOO
from tpplan import io
from tpplan.errors import ConfigError
from tpplan.specs.hf import resolve_kv_heads


def _hf(tmp_path, name, cfg):
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps(cfg))
    return io.load_model(p)


def test_every_reference_config_matches_models_csv(reference):
    """Each hf_configs/*.json parses to the shape models.csv records for it (same source rows)."""
    with open(reference / "models" / "models.csv") as f:
        rows = {r["name"].split(" ")[0]: r for r in csv.DictReader(f)}
    checked = 0
    for path in sorted((reference / "models" / "hf_configs").glob("*.json")):
        m = io.load_model(path)
        row = rows.get(path.stem) or rows.get(path.stem.replace("-hf", ""))
        if row is None:
            continue
        assert m.num_layers == int(row["num_layers"]), path.name
        assert m.hidden_size == int(row["hidden_size"]), path.name
        assert m.num_attention_heads == int(row["num_attention_heads"]), path.name
        kv = row["num_key_value_heads"] or row["num_attention_heads"]  # blank = MHA (GPT-NeoX)
        assert m.num_kv_heads == int(kv), path.name
        assert m.vocab_size == int(row["vocab_size"]), path.name
        if row["num_experts"]:
            assert m.moe and m.moe.num_experts == int(row["num_experts"]), path.name
            assert m.moe.experts_per_token == int(row["experts_per_token"]), path.name
        else:
            assert m.moe is None, path.name
        checked += 1
    assert checked >= 25


def test_llama4_text_config_and_moe_widths(reference):
    m = io.load_model(reference / "models" / "hf_configs" / "Llama-4-Scout-17B-16E-Instruct.json")
    assert (m.num_layers, m.hidden_size, m.num_attention_heads, m.num_kv_heads) == (48, 5120, 40, 8)
    assert m.architecture == "Llama4ForConditionalGeneration"
    assert m.intermediate_size == 16384  # intermediate_size_mlp: dense layers
    assert m.moe.expert_intermediate_size == 8192 and m.moe.shared_expert_intermediate_size == 8192
    assert m.moe.num_experts == 16 and m.moe.experts_per_token == 1


def test_qwen3_moe_expert_width_and_no_dense_layers(reference):
    m = io.load_model(reference / "models" / "hf_configs" / "Qwen3-30B-A3B.json")
    assert m.moe.expert_intermediate_size == 768 and m.intermediate_size == 6144
    assert m.num_moe_layers == 48 and not m.has_dense_mlp


def test_falcon_multi_query_has_one_kv_head(tmp_path):
    """Falcon-7B: multi_query and no new_decoder_architecture → 1 KV head (vLLM convertor :507-523),
    even though old configs also carry n_head_kv."""
    cfg = {
        "architectures": ["FalconForCausalLM"],
        "model_type": "falcon",
        "hidden_size": 4544,
        "num_attention_heads": 71,
        "num_hidden_layers": 32,
        "multi_query": True,
        "n_head_kv": 71,
        "new_decoder_architecture": False,
        "parallel_attn": True,
        "vocab_size": 65024,
    }
    m = _hf(tmp_path, "falcon-7b", cfg)
    assert m.num_kv_heads == 1 and m.num_attention_heads == 71
    assert m.intermediate_size == 4 * 4544 and not m.gated_mlp
    assert m.allreduces_per_layer == 1  # attention and MLP summed before one all-reduce


def test_falcon_new_decoder_reads_num_kv_heads(reference):
    m = io.load_model(reference / "models" / "hf_configs" / "Falcon-40B.json")
    assert m.num_kv_heads == 8


def test_kv_field_precedence():
    """n_head_kv, num_kv_heads, num_key_value_heads, multi_query_group_num, num_attention_groups."""
    assert resolve_kv_heads({"num_key_value_heads": 8, "n_head_kv": 4}, "x", 32) == (4, "n_head_kv")
    assert resolve_kv_heads({"multi_query_group_num": 2}, "chatglm", 32) == (2, "multi_query_group_num")
    assert resolve_kv_heads({"num_key_value_heads": None}, "llama", 32)[0] == 32
    # multi_query only matters for Falcon in vLLM 0.33
    assert resolve_kv_heads({"multi_query": True}, "gpt_bigcode", 48)[0] == 48


def test_opt_config(tmp_path):
    cfg = {
        "architectures": ["OPTForCausalLM"],
        "model_type": "opt",
        "hidden_size": 9216,
        "ffn_dim": 36864,
        "num_attention_heads": 72,
        "num_hidden_layers": 64,
        "vocab_size": 50272,
        "max_position_embeddings": 2048,
        "word_embed_proj_dim": 9216,
        "torch_dtype": "float16",
    }
    m = _hf(tmp_path, "opt-66b", cfg)
    assert (m.intermediate_size, m.num_kv_heads, m.dtype, m.gated_mlp) == (36864, 72, "fp16", False)


def test_deepseek_mla_and_moe(tmp_path):
    cfg = {k: v for k, v in DSV3.items() if k != "quantization_config"}
    m = _hf(tmp_path, "dsv3", cfg)
    assert m.mla.cache_width == 576 and m.head_dim == 192
    assert m.moe.first_dense_layers == 3 and m.num_moe_layers == 58 and m.has_dense_mlp
    assert m.moe.shared_expert_intermediate_size == 2048


def test_unknown_architecture_is_planned_with_a_warning(tmp_path):
    cfg = dict(FOO)
    m = _hf(tmp_path, "foo", cfg)
    assert m.architecture == "FooForCausalLM" and m.num_kv_heads == 16
    assert any("not one tpplan knows" in n for n in m.notes)


def test_unknown_architecture_without_standard_fields_is_refused(tmp_path):
    cfg = {"architectures": ["BarModel"], "model_type": "bar", "d_embed": 1024, "layers": 8}
    with pytest.raises(ConfigError, match="missing num_hidden_layers"):
        _hf(tmp_path, "bar", cfg)


def test_bundled_models_load():
    from tpplan import bundled

    names = bundled.bundled_names(bundled.MODELS)
    for required in ("llama-3.1-8b", "llama-3.1-70b", "qwen2.5-32b", "mixtral-8x7b", "minicpm-2b", "tiny"):
        assert required in names
    for n in names:
        m = io.load_model(n)
        assert m.source, n
    assert io.load_model("qwen2.5-32b").num_attention_heads == 40
    assert io.load_model("minicpm-2b").num_attention_heads == 36


def test_float32_config_is_served_as_bf16(reference):
    m = io.load_model(reference / "models" / "hf_configs" / "OLMo-2-32B.json")
    assert m.dtype == "bf16" and any("float32" in n for n in m.notes)


def test_default_context_follows_vllm_rope_rules(reference):
    """vLLM multiplies max_model_len by the RoPE factor except for llama3/yarn/longrope types."""
    cfgs = reference / "models" / "hf_configs"
    assert io.load_model(cfgs / "MiniCPM-2B.json").max_position_embeddings == 65536 * 4  # dynamic, factor 4
    assert io.load_model(cfgs / "gpt-oss-120b.json").max_position_embeddings == 131072  # yarn: as given
    assert io.load_model(cfgs / "Llama-3.1-8B.json").max_position_embeddings == 131072  # llama3: as given


def test_missing_length_falls_back_to_2048(tmp_path):
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "vocab_size": 100,
    }
    m = _hf(tmp_path, "nolen", cfg)
    assert m.max_position_embeddings == 2048 and any("2048" in n for n in m.notes)
