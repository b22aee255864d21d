"""What the winner's neighbours lost on, in numbers, computed from the same stages as the search."""

from __future__ import annotations

import re

import pytest

from tpplan.api.search import prepare
from tpplan.search import Setup, every_integer, neighbours, solve
from tpplan.search.rank import tie_key, within


@pytest.fixture(scope="module")
def explained():
    """TP=8 x2 at its best max_num_seqs, its neighbours, and every value of TP=4 x4 scored one by one."""
    prep = prepare(
        "llama-3.1-70b", ["dgx-h100"], input_tokens=2048, output_tokens=256, gpus=16, slo_tpot_ms=50.0
    )
    tp8 = solve(
        prep.space, Setup("dgx-h100", 8, 1, 2, "bf16", "bf16"), evaluate=prep.evaluate, q=prep.question
    ).best
    tp4 = Setup("dgx-h100", 4, 1, 4, "bf16", "bf16")
    every_tp4 = every_integer(prep.space, tp4, evaluate=prep.evaluate, q=prep.question)
    near = {n.change: n for n in neighbours(prep.space, tp8, evaluate=prep.evaluate, q=prep.question)}
    return tp8, near, [s for s in every_tp4 if s.feasible]


def test_tp16_across_nodes_loses_on_the_all_reduce(explained):
    tp8, near, _ = explained
    assert (tp8.tp, tp8.pp, tp8.replicas) == (8, 1, 2) and tp8.feasible
    tp16 = near["TP*2"]
    assert tp16.config.tp == 16 and tp16.config.replicas == 1  # the same 16 GPUs
    m = re.search(r"crosses the NVLink domain \(network\): all-reduce ([\d.]+)x slower", tp16.lost_on)
    assert m and float(m.group(1)) > 2
    assert tp16.tokens_per_usd_ratio < 1 and f"{tp16.tokens_per_usd_ratio:.2f}x tokens/USD" in tp16.lost_on


def test_a_neighbour_infeasible_at_the_winners_seqs_is_judged_at_its_own_best(explained):
    tp8, near, tp4_feasible = explained
    tp4 = near["TP/2"]
    assert tp4.config.tp == 4 and tp4.config.replicas == 4 and tp4.config.feasible
    assert f"at max_num_seqs {tp8.max_num_seqs}, TPOT" in tp4.lost_on and "over the 50 ms SLO" in tp4.lost_on
    # its best is the best of every max_num_seqs scored one by one: an integer, not a power of two
    assert tp4.config.output_tokens_per_usd == max(s.output_tokens_per_usd for s in tp4_feasible)
    n = tp4.config.max_num_seqs  # 56 under the cost model today: between the grid's 32 and 64
    assert n & (n - 1) != 0
    assert tp4.tokens_per_usd_ratio == pytest.approx(
        tp4.config.output_tokens_per_usd / tp8.output_tokens_per_usd, abs=1e-3
    )
    # more than this winner, inside the interval, and behind it on TTFT: a tie the winner took, said so
    assert tp4.tokens_per_usd_ratio > 1 and within(tp8, tp4.config)
    assert tie_key(tp8) < tie_key(tp4.config) and tp8.ttft_ms < tp4.config.ttft_ms
    said = f"the tie went to the winner's lower TTFT ({tp8.ttft_ms:,.0f} vs {tp4.config.ttft_ms:,.0f} ms)"
    assert tp4.lost_on.endswith(said) and "did not reach it" not in tp4.lost_on


def test_a_neighbour_over_the_budget_says_how_many_gpus_it_needs(explained):
    _, near, _ = explained
    more = near["replicas+1"]
    assert more.config is None and more.lost_on.endswith("needs 24 GPUs; the budget is 16")


def test_pipeline_stages_lose_on_the_bubble(explained):
    _, near, _ = explained
    pp2 = near["PP+1"]
    assert pp2.config.pp == 2 and "pipeline bubble" in pp2.lost_on and pp2.tokens_per_usd_ratio < 1
