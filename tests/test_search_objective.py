"""Constraints in numbers: each violation says which constraint and by how much, on the real stages."""

from __future__ import annotations

import pytest

from tpplan.api.search import prepare
from tpplan.records import ScoredConfig
from tpplan.search import Config, pareto_front, score


@pytest.fixture(scope="module")
def h100():
    return prepare(
        "llama-3.1-70b", ["dgx-h100"], input_tokens=2048, output_tokens=256, gpus=16, slo_tpot_ms=50.0
    )


def scored(prep, tp, pp, replicas, seqs, dtype="bf16", profile="dgx-h100"):
    c = Config(profile, tp, pp, replicas, seqs, dtype, dtype)
    return score(c, prep.evaluate(c), q=prep.question)


def test_a_feasible_configuration_has_its_slo_margin_and_no_reasons(h100):
    s = scored(h100, 8, 1, 2, 32)
    assert s.feasible and s.reasons == []
    assert (
        s.violations["slo_tpot"] == pytest.approx(s.tpot_ms / 50 - 1, abs=1e-5)
        and s.violations["slo_tpot"] < 0
    )
    assert s.concurrency == 64 and s.gpus == 16  # without a client load each replica runs max_num_seqs


def test_tpot_over_the_slo_is_a_violation_by_that_fraction(h100):
    s = scored(h100, 8, 1, 2, 256)
    assert not s.feasible and s.tpot_ms > 50
    assert s.violations["slo_tpot"] == pytest.approx(s.tpot_ms / 50 - 1, abs=1e-5)
    assert any("TPOT" in r and "50 ms SLO" in r for r in map(str, s.reasons))


def test_weights_that_do_not_fit_violate_memory(h100):
    s = scored(h100, 1, 1, 16, 1)  # 70B in bf16 on one 80 GiB GPU
    assert s.violations["memory"] > 0 and not s.feasible
    assert "GiB" in str(s.reasons[0])


def test_more_sequences_than_the_kv_cache_holds_violate_kv_cache(h100):
    s = scored(h100, 2, 1, 8, 64)  # TP=2 leaves room for ~15 requests of 2304 tokens
    assert s.violations["kv_cache"] > 0
    assert any("KV cache holds" in r for r in map(str, s.reasons))


def test_a_tp_the_engine_refuses_is_an_engine_violation(h100):
    s = scored(h100, 3, 1, 1, 1)  # 64 heads are not divisible by 3
    assert s.violations["engine"] == 1.0 and "divisible" in str(s.reasons[0])


def test_basis_says_fitted_or_from_the_profile():
    fitted = prepare("llama-3.1-70b", ["dgx-h100"], input_tokens=1024, output_tokens=128, gpus=8)
    plain = prepare(
        "llama-3.1-70b", ["a100-pcie-8x-nvlink-pairs"], input_tokens=1024, output_tokens=128, gpus=8
    )
    assert (
        scored(fitted, 8, 1, 1, 16).basis == "fitted"
    )  # the bundled H100 profile is fitted to serving points
    assert scored(plain, 8, 1, 1, 16, profile="a100-pcie-8x-nvlink-pairs").basis == "profile"


def result(tpu, tpot, ttft, feasible=True) -> ScoredConfig:
    return ScoredConfig(
        profile="p",
        tp=1,
        pp=1,
        replicas=1,
        gpus=1,
        concurrency=1,
        max_num_seqs=1,
        dtype="bf16",
        kv_cache_dtype="bf16",
        output_tokens_per_s=1.0,
        output_tokens_per_usd=tpu,
        ttft_ms=ttft,
        tpot_ms=tpot,
        feasible=feasible,
        violations={},
        reasons=[],
        basis="profile",
    )


def test_pareto_front_keeps_what_nothing_beats_on_all_three():
    a, b, c = result(100, 30, 500), result(80, 20, 400), result(70, 25, 450)  # c is beaten by b on all three
    d = result(200, 10, 100, feasible=False)  # infeasible: never on the front
    assert pareto_front([a, b, c, d]) == [a, b]
