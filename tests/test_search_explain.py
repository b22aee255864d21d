"""What the winner's neighbours lost on, in numbers, computed from the same stages as the search."""

from __future__ import annotations

import re

import pytest

from tpplan import search as search_stage
from tpplan.api.search import prepare
from tpplan.search import better, neighbours


@pytest.fixture(scope="module")
def explained():
    prep = prepare(
        "llama-3.1-70b", ["dgx-h100"], input_tokens=2048, output_tokens=256, gpus=16, slo_tpot_ms=50.0
    )
    feasible = [s for s in search_stage.exhaustive(prep) if s.feasible]
    best = feasible[0]
    for s in feasible:
        best = s if better(s, best) else best
    return best, {n.change: n for n in neighbours(prep.space, best, prep.evaluate, prep.question)}, feasible


def test_the_winner_is_tp8_in_one_node_and_tp16_across_nodes_loses_on_the_all_reduce(explained):
    best, near, _ = explained
    assert (best.tp, best.pp, best.replicas) == (8, 1, 2)
    tp16 = near["TP*2"]
    assert tp16.config.tp == 16 and tp16.config.replicas == 1  # the same 16 GPUs
    m = re.search(r"crosses the NVLink domain \(network\): all-reduce ([\d.]+)x slower", tp16.lost_on)
    assert m and float(m.group(1)) > 2
    assert tp16.tokens_per_usd_ratio < 1 and f"{tp16.tokens_per_usd_ratio:.2f}x tokens/USD" in tp16.lost_on


def test_a_neighbour_infeasible_at_the_winners_seqs_is_judged_at_its_own_best(explained):
    best, near, feasible = explained
    tp4 = near["TP/2"]
    assert tp4.config.tp == 4 and tp4.config.replicas == 4 and tp4.config.feasible
    assert f"at max_num_seqs {best.max_num_seqs}, TPOT" in tp4.lost_on and "over the 50 ms SLO" in tp4.lost_on
    same_layout = [s for s in feasible if (s.tp, s.pp, s.replicas) == (4, 1, 4)]
    assert tp4.config.output_tokens_per_usd == max(s.output_tokens_per_usd for s in same_layout)
    assert tp4.tokens_per_usd_ratio == pytest.approx(
        tp4.config.output_tokens_per_usd / best.output_tokens_per_usd, abs=1e-3
    )


def test_a_neighbour_over_the_budget_says_how_many_gpus_it_needs(explained):
    _, near, _ = explained
    more = near["replicas+1"]
    assert more.config is None and more.lost_on.endswith("needs 24 GPUs; the budget is 16")


def test_pipeline_stages_lose_on_the_bubble(explained):
    _, near, _ = explained
    pp2 = near["PP+1"]
    assert pp2.config.pp == 2 and "pipeline bubble" in pp2.lost_on and pp2.tokens_per_usd_ratio < 1
