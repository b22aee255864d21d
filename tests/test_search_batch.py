"""max_num_seqs is solved per setup: the best integer under the model, held to every integer scored."""

from __future__ import annotations

import optuna

from tpplan import api
from tpplan import search as search_stage
from tpplan.api.search import prepare
from tpplan.search import Setup, config_of, every_integer, solve
from tpplan.search import study as study_mod

DEMO_REFS = ("llama-3.1-70b", ["dgx-h100"])


def best_of(scored):
    return min((s for s in scored if s.feasible), key=search_stage.rank_key)


def test_the_best_integer_is_found_where_a_power_of_two_is_not():
    """TP=4 x4 on 16 H100s: 64 sequences miss the 50 ms TPOT SLO, 32 leave tokens/USD on the table;
    the best (56 under the cost model today) lies between them, and it is the best of all the values
    the KV cache allows, scored one by one."""
    prep = prepare(*DEMO_REFS, input_tokens=2048, output_tokens=256, gpus=16, slo_tpot_ms=50.0)
    setup = Setup("dgx-h100", 4, 1, 4, "bf16", "bf16")
    solved = solve(prep.space, setup, evaluate=prep.evaluate, q=prep.question)
    every = every_integer(prep.space, setup, evaluate=prep.evaluate, q=prep.question)
    assert len(every) == solved.upper and [s.max_num_seqs for s in every] == list(range(1, solved.upper + 1))
    n = solved.best.max_num_seqs
    assert n == best_of(every).max_num_seqs and 32 < n < 64
    assert solved.best.feasible and not every[n].feasible  # n + 1 is over the SLO
    assert len(solved.probes) <= 8 < solved.upper  # a handful of evaluations, not the range


def test_one_a10g_runs_what_its_kv_cache_holds():
    """Llama-3.1-8B on one A10G (24 GB): the cache holds 14 requests of 2,304 tokens (powers of two
    gave 8 at most); without an SLO (the default TTFT limit lifted: a 2,048-token prompt alone takes ~1.5 s
    to prefill there) the most that fit earn the most."""
    prep = prepare(
        "llama-3.1-8b", ["a10g-4x-pcie"], input_tokens=2048, output_tokens=256, gpus=1, slo_ttft_ms=None
    )
    (setup,) = prep.space.setups()
    solved = solve(prep.space, setup, evaluate=prep.evaluate, q=prep.question)
    assert solved.upper == 14 and solved.best.max_num_seqs == 14 and solved.best.feasible
    over = setup.at(15)
    assert not search_stage.score(over, prep.evaluate(over), q=prep.question).feasible


def test_under_a_client_load_the_range_stops_at_a_replicas_share():
    prep = prepare(*DEMO_REFS, input_tokens=2048, output_tokens=256, gpus=8, concurrency=96, slo_tpot_ms=50.0)
    setup = Setup("dgx-h100", 4, 1, 2, "bf16", "bf16")
    solved = solve(prep.space, setup, evaluate=prep.evaluate, q=prep.question)
    assert solved.upper == 48  # 96 clients on 2 replicas
    every = every_integer(prep.space, setup, evaluate=prep.evaluate, q=prep.question)
    assert config_of(solved.best) == config_of(best_of(every))


def test_a_layout_that_does_not_fit_is_one_infeasible_configuration():
    prep = prepare(*DEMO_REFS, input_tokens=2048, output_tokens=256, gpus=16, slo_tpot_ms=50.0)
    solved = solve(
        prep.space, Setup("dgx-h100", 1, 1, 16, "bf16", "bf16"), evaluate=prep.evaluate, q=prep.question
    )
    assert solved.upper == 1 and len(solved.probes) == 1 and not solved.best.feasible
    assert solved.best.violations["memory"] > 0


def test_the_search_equals_the_exhaustive_evaluation_on_a_small_space(tmp_path):
    """Every setup at every max_num_seqs scored one by one, against the CLI's own search (a real
    SQLite study), on four A10Gs with an SLO on both TPOT and TTFT."""
    question = {"gpus": 4, "slo_tpot_ms": 60.0, "slo_ttft_ms": 4000.0}
    prep = prepare("llama-3.1-8b", ["a10g-4x-pcie"], input_tokens=2048, output_tokens=256, **question)
    every = search_stage.exhaustive(prep)
    assert len(every) > 4 * prep.space.size  # more than the setups: their integers
    result, plan = api.search(
        "llama-3.1-8b", ["a10g-4x-pcie"], input_tokens=2048, output_tokens=256, out=tmp_path, **question
    )
    assert config_of(result.best) == config_of(best_of(every))
    assert plan.max_num_seqs == result.best.max_num_seqs
    # a real SQLite study: one trial per setup, each holding the chosen value and its range
    study = optuna.load_study(study_name=result.study, storage=study_mod.open_storage(result.storage))
    assert result.storage.startswith("sqlite:///") and len(study.trials) == prep.space.size
    best_trial = next(t for t in study.trials if t.user_attrs["config"] == config_of(result.best).setup.key)
    assert best_trial.user_attrs["result"]["max_num_seqs"] == result.best.max_num_seqs
    low, high = best_trial.user_attrs["max_num_seqs_range"]
    assert low == 1 and result.best.max_num_seqs <= high
