"""Every serving estimate carries an interval: from the profile's own calibration when it has one
(held apart when there are enough points), else the bundled fit's held-apart error, marked assumed."""

from __future__ import annotations

import pytest

from tpplan import api, io
from tpplan.costmodel import price_layout
from tpplan.costmodel.spread import (
    POOLED,
    bundled_spreads,
    interval,
    ratio_quantiles,
    spread_for,
    spread_of,
)
from tpplan.records import Layout, ServeEstimate
from tpplan.specs import Workload

WORKLOAD = Workload(input_tokens=1024, output_tokens=256, concurrency=64)


def test_ratio_quantiles_are_measured_over_predicted():
    pairs = [(10.0, m) for m in (8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0)]
    lo, hi = ratio_quantiles(pairs)
    assert lo == pytest.approx(0.9) and hi == pytest.approx(1.7)


def test_interval_scales_ttft_tpot_and_tokens_per_usd_by_littles_law():
    s = spread_of(
        "vllm", [(1, 0.9), (1, 1.2)] * 5, ttft_pairs=[(1, 0.5), (1, 2.0)] * 5, held_apart=True, source="test"
    )
    band = interval(s, ttft_ms=400.0, tpot_ms=20.0, output_tokens=101, tokens_per_usd=1000.0)
    assert band.ttft_ms_low == pytest.approx(400 * s.ttft_ratio_p10)
    assert band.tpot_ms_high == pytest.approx(20 * s.tpot_ratio_p90)
    latency, slow = 400 + 100 * 20, band.ttft_ms_high + 100 * band.tpot_ms_high
    assert band.output_tokens_per_usd_low == pytest.approx(1000 * latency / slow, abs=0.1)
    assert band.output_tokens_per_usd_low < 1000 < band.output_tokens_per_usd_high


def test_the_bundled_spread_is_held_apart_and_assumed_for_each_engine():
    spreads = bundled_spreads()
    assert {POOLED, "vllm", "trtllm"} <= set(spreads)
    for s in spreads.values():
        assert s.held_apart and s.basis == "assumed" and s.points >= 40
        assert s.tpot_ratio_p10 < 1 < s.tpot_ratio_p90 and s.ttft_ratio_p10 < 1 < s.ttft_ratio_p90
    profile = io.load_profile("hgx-h200")
    assert spread_for(profile, "sglang") == spreads[POOLED]  # no SGLang measurement: the pooled one
    assert spread_for(profile, "vllm") == spreads["vllm"]


def test_an_estimate_on_bundled_parameters_says_its_interval_is_assumed():
    est = api.estimate_serve("llama-3.1-70b", "dgx-h100", layout=Layout(tp=8), workload=WORKLOAD)
    assert est.ttft_ms_low < est.ttft_ms < est.ttft_ms_high
    assert est.tpot_ms_low < est.tpot_ms < est.tpot_ms_high
    assert est.output_tokens_per_usd_low < est.output_tokens_per_usd < est.output_tokens_per_usd_high
    prov = est.provenance["uncertainty"]
    assert prov.basis == "assumed" and "assumed from held-apart error of the bundled fit" in prov.source
    assert "held-apart points" in prov.value


def test_a_calibrated_spread_replaces_the_bundled_one():
    s = spread_of(
        "vllm",
        [(1, 0.5), (1, 1.5)] * 5,
        ttft_pairs=[(1, 0.2), (1, 3.0)] * 5,
        held_apart=True,
        source="my points",
    )
    base = io.load_profile("dgx-h100")
    mine = base.model_copy(update={"efficiency": base.efficiency.model_copy(update={"serving_spread": (s,)})})
    wide = price_layout(io.load_model("llama-3.1-70b"), mine, layout=Layout(tp=8), workload=WORKLOAD)
    plain = price_layout(io.load_model("llama-3.1-70b"), base, layout=Layout(tp=8), workload=WORKLOAD)
    assert wide.tpot_ms == plain.tpot_ms  # the point estimate does not move, its interval does
    assert wide.tpot_ms_high == pytest.approx(wide.tpot_ms * s.tpot_ratio_p90, rel=1e-3)
    assert (
        wide.provenance["uncertainty"].basis == "fitted"
        and wide.provenance["uncertainty"].source == "my points"
    )


def test_a_record_written_before_intervals_reads_back_with_a_zero_width_one():
    est = api.estimate_serve("llama-3.1-8b", "dgx-h100", layout=Layout(tp=1), workload=WORKLOAD)
    old = {k: v for k, v in est.model_dump(mode="json").items() if not k.endswith(("_low", "_high"))}
    back = ServeEstimate.model_validate(old)
    assert back.ttft_ms_low == back.ttft_ms_high == est.ttft_ms


def test_calibrating_on_serving_points_keeps_a_held_apart_spread(tmp_path, reference):
    rows = (reference / "serving" / "silicon_calibration.csv").read_text().splitlines()
    mine = [rows[0]] + [r for r in rows[1:] if ",vllm," in r and ",4,1," in r]  # 30 points
    src = tmp_path / "points.csv"
    src.write_text("\n".join(mine) + "\n")
    cal, profile = api.calibrate([src], "dgx-h100", out=tmp_path / "cal.yaml")
    (s,) = cal.sources[0].spread
    assert s.engine == "vllm" and s.held_apart and s.points == 15 and s.basis == "fitted"
    assert profile.efficiency.spread("vllm") == s
    assert io.load_profile(tmp_path / "cal.yaml").efficiency.spread("vllm") == s  # written with the profile
    est = price_layout(io.load_model("qwen3-32b"), profile, layout=Layout(tp=4), workload=WORKLOAD)
    assert est.provenance["uncertainty"].basis == "fitted"


def test_too_few_serving_points_keep_no_spread_of_their_own(tmp_path, reference):
    rows = (reference / "serving" / "silicon_calibration.csv").read_text().splitlines()
    mine = [rows[0]] + [r for r in rows[1:] if ",vllm," in r and ",4,1," in r][:5]
    src = tmp_path / "few.csv"
    src.write_text("\n".join(mine) + "\n")
    cal, profile = api.calibrate([src], "dgx-h100")
    assert cal.sources[0].spread == [] and profile.efficiency.spread("vllm") is None
