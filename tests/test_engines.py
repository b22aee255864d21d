"""Engine rules, walked over every reference config and checked against the reference's own rules
(reference/engines/README.md §2 Megatron, §4 vLLM), restated here independently of tpplan's code."""

from __future__ import annotations

import math

import pytest

from tpplan import engines, io
from tpplan.candidates import candidates
from tpplan.memory import kv_bytes_per_token, pp_split
from tpplan.specs import ModelSpec

TPS = range(1, 17)
PPS = (1, 2, 3, 4, 8)


def vllm_expected(m: ModelSpec, tp: int) -> bool:
    h, kv = m.num_attention_heads, m.num_kv_heads
    ok = h % tp == 0  # §4.1 config time
    ok &= (tp % kv == 0) if tp >= kv else (kv % tp == 0)  # §4.3 QKVParallelLinear
    if m.has_dense_mlp:
        ok &= m.intermediate_size % tp == 0  # §4.3 MergedColumnParallelLinear
    vp = math.ceil(m.vocab_size / 64) * 64  # §4.3 vocabulary padding
    ok &= vp % tp == 0
    return ok


def megatron_expected(m: ModelSpec, tp: int, pp: int) -> bool:
    h, kv = m.num_attention_heads, m.num_kv_heads
    ok = h % tp == 0 and (kv % tp == 0 or tp % kv == 0) and m.num_layers % pp == 0
    if m.has_dense_mlp:
        ok &= (2 * m.intermediate_size if m.gated_mlp else m.intermediate_size) % tp == 0
    return ok


@pytest.fixture(scope="module")
def reference_models(reference):
    return [io.load_model(p) for p in sorted((reference / "models" / "hf_configs").glob("*.json"))]


def test_vllm_verdicts_match_reference_rules(reference_models):
    for m in reference_models:
        for tp in TPS:
            for pp in PPS:
                v = engines.check("vllm", m, tp=tp, pp=pp)
                assert v.ok == vllm_expected(m, tp), (m.name, tp, pp, v.reasons)
                assert v.layers_per_stage == pp_split(m.num_layers, pp)
                if v.ok:
                    assert v.heads_per_rank == [m.num_attention_heads // tp] * tp
                    assert v.kv_heads_per_rank == [max(1, m.num_kv_heads // tp)] * tp  # §4.2


def test_megatron_verdicts_match_reference_rules(reference_models):
    for m in reference_models:
        for tp in TPS:
            for pp in PPS:
                v = engines.check("megatron", m, tp=tp, pp=pp)
                assert v.ok == megatron_expected(m, tp, pp), (m.name, tp, pp, v.reasons)


def test_candidates_command_agrees_on_every_reference_config(reference):
    """The same verdicts through `candidates` (what the CLI prints) on a 16-GPU DGX H100 budget."""
    prof = io.load_profile("dgx-h100")
    for path in sorted((reference / "models" / "hf_configs").glob("*.json")):
        m = io.load_model(path)
        for c in candidates(m, prof, engine="vllm", budget_gpus=16, max_model_len=4096):
            assert c.engine_ok == vllm_expected(m, c.tp), (path.name, c.tp, c.pp)
        for c in candidates(m, prof, engine="megatron", budget_gpus=16, max_model_len=4096):
            assert c.engine_ok == megatron_expected(m, c.tp, c.pp), (path.name, c.tp, c.pp)


def test_vllm_pp_partition_examples():
    """The examples in §4.4, from vLLM's get_pp_indices."""
    assert pp_split(80, 3) == [27, 27, 26]
    assert pp_split(61, 3) == [20, 21, 20]
    assert pp_split(28, 3) == [9, 10, 9]
    assert pp_split(126, 3) == [42, 42, 42]


def test_megatron_405b_pp():
    """§4.6: Llama-3.1-405B (126 layers) passes only PP 1, 2 and 3 of {1,2,3,4,8} in Megatron."""
    m = io.load_model("llama-3.1-70b").model_copy(update={"num_layers": 126})
    assert [pp for pp in PPS if engines.check("megatron", m, tp=8, pp=pp).ok] == [1, 2, 3]


def test_phi3_medium_passes_config_but_fails_load():
    """§4.3: H=40, KV=10 passes the heads check at TP=4 and 8 but QKVParallelLinear refuses it."""
    m = io.load_model("qwen2.5-32b").model_copy(
        update={"num_kv_heads": 10, "architecture": "Phi3ForCausalLM"}
    )
    for tp in (4, 8):
        v = engines.check("vllm", m, tp=tp, pp=1)
        assert not v.ok and any(
            "num_kv_heads (10)" in r or "num_kv_heads (10)" in r for r in map(str, v.reasons)
        )
        assert not any("num_attention_heads" in r for r in map(str, v.reasons))


def test_36_heads_at_tp8_is_refused_with_the_valid_tps():
    m = io.load_model("minicpm-2b")
    v = engines.check("vllm", m, tp=8, pp=1, tp_limit=16)
    assert not v.ok
    assert v.heads_per_rank == [5, 5, 5, 5, 4, 4, 4, 4]
    assert any("num_attention_heads (36) is not divisible by tp (8)" in r for r in map(str, v.reasons))
    assert any(r.startswith("vllm accepts tp in 1, 2, 4") for r in map(str, v.reasons))


def test_kv_bytes_per_token_example():
    """§4.5: Llama-3.1-70B at TP=8, PP=1, bf16: 2·80·1·128·2 = 40,960 B/token."""
    m = io.load_model("llama-3.1-70b")
    assert kv_bytes_per_token(m, 8, 80, "bf16") == 40960


def test_sglang_refuses_pp_for_models_without_pp_support():
    m = io.load_model("minicpm-2b")  # SGLang's MiniCPM has no pp_proxy_tensors
    assert not engines.check("sglang", m, tp=4, pp=2).ok
    assert engines.check("sglang", m, tp=4, pp=1).ok
    assert engines.check("vllm", m, tp=4, pp=2).ok


def test_sglang_memory_fraction_matches_worked_example():
    """H100 with 81,559 MiB: TP=1 → 0.83, TP=8 → 0.812 (SGLang 0.5.23 memory_hook.py)."""
    gib = 81559 / 1024
    assert engines.sglang_defaults(gib, 1, pp=1, mla=False).memory_fraction == pytest.approx(0.83, abs=0.001)
    assert engines.sglang_defaults(gib, 8, pp=1, mla=False).memory_fraction == pytest.approx(0.812, abs=0.001)


def test_unknown_architecture_is_unsupported_by_vllm_only():
    m = io.load_model("tiny").model_copy(update={"architecture": "FooForCausalLM"})
    assert not engines.check("vllm", m, tp=2, pp=1).ok
    assert engines.check("megatron", m, tp=2, pp=1).ok
    assert not engines.check("vllm", m.model_copy(update={"architecture": "RWForCausalLM"}), tp=1, pp=1).ok
