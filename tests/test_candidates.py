"""Layout enumeration, placement on the topology, and the memory fit."""

from __future__ import annotations

import pytest

from tpplan import api, io
from tpplan.candidates import candidates, enumerate_layouts, judge, place
from tpplan.records import Layout


def _one(cands, tp, pp=1, replicas=1):
    return next(c for c in cands if (c.tp, c.pp, c.replicas) == (tp, pp, replicas))


def test_enumeration_covers_every_layout_of_the_budget():
    lays = enumerate_layouts(8, num_layers=80)
    assert len(lays) == 38  # sum over n <= 8 of the ordered factorizations of n into 3 factors
    assert all(x.gpus <= 8 for x in lays)
    full = enumerate_layouts(8, num_layers=80, full_budget=True)
    assert {(x.tp, x.pp, x.replicas) for x in full} >= {(8, 1, 1), (4, 1, 2), (1, 1, 8), (2, 2, 2)}
    assert all(x.gpus == 8 for x in full)
    assert max(x.pp for x in enumerate_layouts(8, num_layers=3)) == 3  # no stage without layers


def test_tp16_on_two_dgx_nodes_crosses_the_nvlink_domain():
    m, prof = io.load_model("llama-3.1-70b"), io.load_profile("dgx-h100")
    cands = candidates(m, prof, engine="vllm", budget_gpus=16, max_model_len=8192)
    tp16 = _one(cands, 16)
    assert tp16.crosses_nvlink_domain and tp16.crosses_node and tp16.tp_fabric == "network"
    assert tp16.nodes == 2 and tp16.valid  # legal and fits; just slow
    tp8 = _one(cands, 8, replicas=2)
    assert not tp8.crosses_nvlink_domain and tp8.tp_fabric == "nvlink" and tp8.nodes == 2
    pp2 = _one(cands, 8, pp=2)
    assert pp2.crosses_node and not pp2.crosses_nvlink_domain


def test_tp4_on_paired_bridges_crosses_the_domain_over_pcie():
    prof = io.load_profile("a100-pcie-8x-nvlink-pairs")
    tp2 = place(prof, Layout(tp=2, replicas=4), budget_gpus=8)
    tp4 = place(prof, Layout(tp=4, replicas=2), budget_gpus=8)
    assert not tp2.crosses_nvlink_domain and tp2.tp_fabric == "nvlink"
    assert tp4.crosses_nvlink_domain and tp4.tp_fabric == "pcie" and not tp4.crosses_node


def test_nvl72_tp8_spans_trays_inside_one_nvlink_domain():
    prof = io.load_profile("gb200-nvl72")
    p = place(prof, Layout(tp=8, replicas=9), budget_gpus=72)
    assert p.crosses_node and not p.crosses_nvlink_domain and p.tp_fabric == "nvlink" and p.problem is None


def test_pcie_only_profile_uses_pcie_for_tp():
    prof = io.load_profile("l40s-8x-pcie")
    assert place(prof, Layout(tp=4), budget_gpus=8).tp_fabric == "pcie"
    multi = place(prof, Layout(tp=8, pp=2), budget_gpus=16)
    assert (
        multi.problem and "no inter-node fabric" in multi.problem
    )  # replicas may span servers, TP/PP may not
    assert place(prof, Layout(tp=8, replicas=2), budget_gpus=16).problem is None


def test_instances_are_not_split_across_nodes():
    prof = io.load_profile("dgx-h100")
    p = place(prof, Layout(tp=3, replicas=5), budget_gpus=16)  # 2 per node fit; the fifth needs a third node
    assert p.problem and "needs 3 node(s)" in p.problem


def test_a_multi_node_instance_is_priced_where_the_engines_start_its_ranks():
    """TP=4 x PP=3 on 8-GPU nodes: the engines start 6 + 6 ranks, so the second TP group spans the
    nodes and its all-reduce runs over the network (packing 8 + 4 would have hidden that)."""
    h100 = io.load_profile("dgx-h100")
    where = place(h100, Layout(tp=4, pp=3, replicas=1), budget_gpus=16)
    assert where.rank_gpus == ((0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13),)
    assert where.tp_fabric == "network" and where.crosses_nvlink_domain and where.problem is None
    uneven = place(h100, Layout(tp=3, pp=3, replicas=1), budget_gpus=16)
    assert "9 ranks do not split evenly over 2 nodes" in uneven.problem


@pytest.mark.parametrize(
    "tp,pp,replicas", [(8, 2, 1), (4, 3, 1), (2, 1, 8), (4, 4, 2), (16, 1, 1), (2, 5, 1)]
)
def test_emit_launches_the_placement_the_candidates_stage_priced(tp, pp, replicas):
    from tpplan.emit.common import place_instances

    where = place(io.load_profile("dgx-h100"), Layout(tp=tp, pp=pp, replicas=replicas), budget_gpus=64)
    launched = [
        sorted(s.node * 8 + g for s in slices for g in s.gpus)
        for slices in place_instances(8, tp, pp=pp, replicas=replicas)
    ]
    assert launched == [sorted(inst) for inst in where.rank_gpus]


def test_memory_fit_numbers_for_llama70b_on_h100():
    m, prof = io.load_model("llama-3.1-70b"), io.load_profile("dgx-h100")
    tp1 = judge(m, prof, layout=Layout(tp=1), engine="vllm", budget_gpus=8, max_model_len=8192)
    assert not tp1.fits and "exceed" in str(tp1.reasons[0])
    assert 131 < tp1.weights_gib_per_gpu < 132  # 70.6e9 params x 2 bytes
    tp8 = judge(m, prof, layout=Layout(tp=8), engine="vllm", budget_gpus=8)
    assert tp8.fits and tp8.valid
    assert tp8.memory_budget_gib_per_gpu == pytest.approx(79.65 * 0.92)  # NVML 81559 MiB x vLLM 0.92
    # KV capacity = free memory / 40,960 B per token (reference §4.5)
    assert tp8.kv_cache_tokens == pytest.approx(tp8.kv_cache_gib_per_gpu * 2**30 / 40960, rel=1e-4)


def test_kv_cache_must_hold_max_model_len():
    m, prof = io.load_model("llama-3.1-70b"), io.load_profile("dgx-h100")
    tp2 = judge(m, prof, layout=Layout(tp=2), engine="vllm", budget_gpus=8)  # default max_model_len = 131072
    assert not tp2.fits and "fewer than max_model_len 131,072" in str(tp2.reasons[0])
    assert judge(m, prof, layout=Layout(tp=2), engine="vllm", budget_gpus=8, max_model_len=8192).fits


def test_mla_cache_is_not_split_by_tp(tmp_path):
    import json

    cfg = {
        "architectures": ["DeepseekV2ForCausalLM"],
        "model_type": "deepseek_v2",
        "hidden_size": 2048,
        "intermediate_size": 10944,
        "moe_intermediate_size": 1408,
        "n_routed_experts": 64,
        "n_shared_experts": 2,
        "num_experts_per_tok": 6,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "kv_lora_rank": 512,
        "q_lora_rank": None,
        "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64,
        "v_head_dim": 128,
        "vocab_size": 102400,
        "first_k_dense_replace": 1,
        "max_position_embeddings": 163840,
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    m = io.load_model(tmp_path / "config.json")
    prof = io.load_profile("dgx-h100")
    c2, c4 = (
        judge(m, prof, layout=Layout(tp=t), engine="vllm", budget_gpus=8, max_model_len=4096) for t in (2, 4)
    )
    assert c2.kv_heads_per_rank == [1, 1] and c4.kv_heads_per_rank == [1] * 4
    assert c2.valid and c4.valid


def test_api_filters_and_budget():
    _, _, budget, found = api.list_candidates("tiny", "cpu-local", tp=[2], pp=[1])
    assert budget == 4 and {c.tp for c in found} == {2} and {c.replicas for c in found} == {1, 2}
