"""Ranking under uncertainty: ties within the top's interval go to lower TTFT, then TPOT, then fewer GPUs;
the decision names the runner-up; the Pareto front drops near-duplicates; a default TTFT limit."""

from __future__ import annotations

import itertools
import json
import re
import shlex

import pytest
from cli_helpers import run

from tpplan import api
from tpplan.api.search import prepare
from tpplan.records import ScoredConfig
from tpplan.search import solved_setups
from tpplan.search.rank import (
    DEFAULT_SLO_TTFT_MS,
    best_per,
    choose,
    near_duplicates_dropped,
    pick,
)


def cfg(tpu, ttft, tpot, *, tp=8, replicas=1, seqs=64, profile="dgx-h100", band=0.10) -> ScoredConfig:
    """A feasible result whose intervals are +-band around each value (tokens/USD: -band/+band/2)."""
    return ScoredConfig(
        profile=profile,
        tp=tp,
        pp=1,
        replicas=replicas,
        gpus=tp * replicas,
        concurrency=seqs * replicas,
        max_num_seqs=seqs,
        dtype="bf16",
        kv_cache_dtype="bf16",
        output_tokens_per_s=tpu / 100 * replicas,
        output_tokens_per_usd=tpu,
        output_tokens_per_usd_low=tpu * (1 - band),
        output_tokens_per_usd_high=tpu * (1 + band / 2),
        ttft_ms=ttft,
        ttft_ms_low=ttft * (1 - band),
        ttft_ms_high=ttft * (1 + band),
        tpot_ms=tpot,
        tpot_ms_low=tpot * (1 - band),
        tpot_ms_high=tpot * (1 + band),
        feasible=True,
        violations={},
        reasons=[],
        basis="fitted",
    )


def test_a_tie_within_the_uncertainty_goes_to_the_lower_ttft():
    slow = cfg(1000.8, 9800, 30, tp=8)  # the case: 0.08% more tokens/USD for 6x the TTFT
    fast = cfg(1000.0, 1600, 30, tp=4, replicas=2)
    winner, decision = choose([slow, fast])
    assert winner == fast
    assert decision.runner_up == slow and decision.within_uncertainty and decision.decided_by == "TTFT"
    assert "TP=8" in decision.text and "lower TTFT (1,600 vs 9,800 ms)" in decision.text


def test_a_margin_beyond_the_uncertainty_wins_on_tokens_per_usd():
    best = cfg(1000, 1900, 40, tp=8)
    quick = cfg(850, 300, 20, tp=4, replicas=2)  # outside the top's -10% band
    winner, decision = choose([quick, best])
    assert winner == best and not decision.within_uncertainty and decision.decided_by == "tokens/USD"
    assert "beyond the estimates'" in decision.text and "1.176x" in decision.text


def test_equal_latency_goes_to_fewer_gpus_and_the_choice_is_deterministic():
    one = cfg(1000, 500, 30, replicas=1)
    two = cfg(1000, 500, 30, replicas=2)  # the same instance twice: the same tokens/USD and latency
    other = cfg(995, 500, 30, tp=4, replicas=2)
    for order in itertools.permutations([one, two, other]):
        winner, decision = choose(list(order))
        assert winner == one and decision.runner_up == other  # more replicas of it is no distinct plan
    assert decision.decided_by == "tokens/USD" and "a close call" in decision.text


def test_with_zero_width_intervals_only_exact_ties_are_ties():
    a, b = cfg(1000, 900, 30, band=0.0), cfg(999, 100, 30, tp=4, band=0.0)
    winner, decision = choose([b, a])
    assert winner == a and not decision.within_uncertainty


def test_near_duplicates_of_one_instance_leave_the_pareto_front():
    seq64 = cfg(1000, 500, 30, seqs=64)
    seq60 = cfg(990, 490, 29.5, seqs=60)  # within seq64's reach on all three: a near-duplicate
    seq16 = cfg(600, 200, 12, seqs=16)  # much faster: a real trade-off, kept
    other = cfg(980, 480, 29, tp=4, replicas=2)  # another layout: kept
    assert near_duplicates_dropped([seq60, seq16, other, seq64]) == [seq64, other, seq16]


def test_best_per_gpu_type():
    h100, a100 = cfg(1000, 500, 30), cfg(700, 800, 40, profile="dgx-a100-80g")
    assert best_per([a100, h100, cfg(600, 400, 30, profile="dgx-a100-80g", tp=4)], "profile") == [h100, a100]
    assert best_per([h100], "profile") == []


def test_best_per_gpu_type_lists_the_winner_for_its_own_type_first():
    """Ties are judged against the top of the pool they are in: within the B group alone TP2 (lower
    TTFT, inside TP4's interval) would be chosen, but the overall winner is TP4 and stands for B."""
    a8 = cfg(1000, 900, 30, band=0.2)
    b4 = cfg(850, 500, 30, tp=4, profile="dgx-a100-80g", band=0.2)
    b2 = cfg(750, 300, 30, tp=2, profile="dgx-a100-80g", band=0.2)
    winner, _ = choose([a8, b4, b2])
    assert winner == b4  # inside a8's interval with lower TTFT
    assert best_per([a8, b4, b2], "profile", winner=winner) == [b4, a8]


def test_the_default_ttft_limit_applies_unless_lifted():
    default = prepare("llama-3.1-8b", ["dgx-h100"], input_tokens=1024, output_tokens=128, gpus=1)
    lifted = prepare(
        "llama-3.1-8b", ["dgx-h100"], input_tokens=1024, output_tokens=128, gpus=1, slo_ttft_ms=None
    )
    assert default.question.slo_ttft_ms == DEFAULT_SLO_TTFT_MS and lifted.question.slo_ttft_ms is None
    assert default.study_name != lifted.study_name  # a different question: a different study


def test_help_documents_the_default_ttft_limit(capsys):
    code, out, _ = run(capsys, "search", "--help")
    text = " ".join(out.split())
    assert code == 0 and f"default: {DEFAULT_SLO_TTFT_MS:g}" in text and "`none` lifts it" in text


TWO_GPUS = (
    "llama-3.1-70b",
    ["dgx-h100", "dgx-a100-80g"],
    {"input_tokens": 2048, "output_tokens": 256, "gpus": 8, "slo_tpot_ms": 50.0},
)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("rank")
    return api.search(*TWO_GPUS[:2], **TWO_GPUS[2], trials=10**6, out=out)


def test_the_search_chooses_among_everything_it_scored_and_explains_it(searched):
    result, plan = searched
    assert result.decision is not None and result.decision.runner_up is not None
    assert plan.why[0] == result.decision.text  # plan.yaml's explanation starts with the decision
    assert result.top[0] == result.best
    prep = prepare(*TWO_GPUS[:2], **TWO_GPUS[2])
    every = solved_setups(prep)  # each setup at its best max_num_seqs (held to every integer elsewhere)
    assert result.trials == prep.space.size == len(every)  # the whole space: the choice must be its
    assert choose([r for r in every if r.feasible])[0].label() == result.best.label()
    assert {r.profile for r in result.best_per_profile} == {"dgx-h100", "dgx-a100-80g"}
    assert all(r.ttft_ms <= DEFAULT_SLO_TTFT_MS for r in result.top)


def test_cli_lifts_the_ttft_limit_with_none_and_shows_the_ranges(capsys, tmp_path):
    cmd = "search llama-3.1-8b --profile dgx-h100 --gpus 1 --isl 1024 --osl 128 --trials 20 --json"
    code, out, _ = run(capsys, *shlex.split(cmd), "--slo-ttft-ms", "none", "--out", tmp_path)
    data = json.loads(out)
    assert code == 0 and data["best"]["violations"]["slo_ttft"] == 0.0
    assert data["best"]["output_tokens_per_usd_low"] < data["best"]["output_tokens_per_usd"]
    assert "decision" in data and "best_per_profile" in data
    code, out, _ = run(capsys, *shlex.split(cmd.replace(" --json", "")), "--out", tmp_path / "b")
    assert code == 0 and "TTFT <= 2000 ms" in out and re.search(r"80% range: [\d,]+-[\d,]+ tokens/USD", out)


def test_several_engines_each_get_a_study_and_plan_and_the_best_is_named(capsys, tmp_path):
    cmd = "search llama-3.1-8b --profile dgx-h100 --gpus 1 --isl 1024 --osl 128 --trials 12 --json"
    code, out, _ = run(capsys, *shlex.split(cmd), "--engine", "vllm,sglang", "--out", tmp_path)
    data = json.loads(out)
    assert code == 0 and set(data["engines"]) == {"vllm", "sglang"} and data["failed"] == {}
    for e, d in data["engines"].items():
        assert d["engine"] == e and d["plan"] == str(tmp_path / e / "plan.yaml")
        assert (tmp_path / e / "study.db").is_file()
    bests = {
        e: ScoredConfig.model_validate({k: v for k, v in d["best"].items() if k != "why"})
        for e, d in data["engines"].items()
    }
    assert data["best_engine"] == pick(bests)
    code, _, err = run(capsys, *shlex.split(cmd), "--engine", "vllm,trt", "--out", tmp_path)
    assert code == 2 and "--engine: 'vllm,trt' is not a list of engines" in err
