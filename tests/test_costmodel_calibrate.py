"""`tpplan calibrate`: the three source formats, what gets fitted, and the fit error it reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from tpplan import api, io
from tpplan.costmodel import Params, read_source
from tpplan.costmodel.collectives import curve_time_us
from tpplan.costmodel.fit import abs_error_stats
from tpplan.errors import ConfigError

DATA = Path(__file__).parent / "data"
SWEEP = DATA / "sweep_cpu_results.jsonl"
NCCL = DATA / "nccl_all_reduce_perf_8xa100.txt"


def test_nccl_tests_output_is_parsed_from_its_table():
    parsed = read_source(NCCL)
    assert parsed.kind == "nccl-tests" and parsed.ranks == 8
    assert len(parsed.points) == 28  # 8 B .. 1 GiB by powers of two
    assert parsed.points[0].bytes == 8 and 20 < parsed.points[0].latency_us < 27


def test_nccl_tests_calibration_fits_the_curve_and_says_so(tmp_path):
    out = tmp_path / "a100.yaml"
    cal, profile = api.calibrate([NCCL], "dgx-a100-80g", out=out)
    fit = profile.efficiency.allreduce_fit("nvlink", "backend")
    assert fit.basis == "fitted" and "nccl_all_reduce_perf_8xa100.txt" in fit.source
    curve = next(c for c in fit.curves if c.ranks == 8)
    assert curve.alpha_us == pytest.approx(24, rel=0.15)
    assert (cal.sources[0].errors[0].metric, cal.sources[0].errors[0].median_abs_pct < 5) == (
        "allreduce",
        True,
    )
    reloaded = io.load_profile(out)  # the written profile is a valid profile with the fit in it
    assert reloaded.efficiency == profile.efficiency


def test_sweep_lines_that_failed_or_were_cut_off_are_skipped_and_counted():
    parsed = read_source(SWEEP)
    assert parsed.kind == "sweep" and len(parsed.points) == 12  # TP 1, 2 x 3 token counts x 2 dtypes
    reasons = " | ".join(parsed.skipped)
    for word in ("timeout", "failed", "oom", "not valid JSON", "oversubscribe"):
        assert word in reasons


def test_sweep_calibration_recovers_achieved_flops_and_gloo_collectives(tmp_path):
    cal, profile = api.calibrate([SWEEP], "cpu-local", out=tmp_path / "cpu.yaml")
    params = Params(profile)
    achieved = params.gemm_fraction.value * profile.gpu.bf16_dense_tflops.value * 1e12
    assert achieved == pytest.approx(18e9, rel=0.05)  # the fixture's bf16 FLOP/s per rank
    two = params.allreduce_curve("pcie", "backend", ranks=2)[0]
    assert two.alpha_us == pytest.approx(95, rel=0.15)
    assert curve_time_us(two, 128 * 512 * 2) == pytest.approx(95 + 131072 / 1.6e3, rel=0.05)
    step = next(e for e in cal.sources[0].errors if e.metric == "step")
    assert step.points == 6 and step.median_abs_pct < 5
    assert params.gemm_fraction.basis == "fitted" and "sweep_cpu_results.jsonl" in params.gemm_fraction.source


def test_the_swept_model_is_found_by_the_name_the_sweep_recorded():
    cal, _ = api.calibrate(
        [SWEEP], "cpu-local"
    )  # lines say "model": "tiny-llama", the spec in sweeps/tiny.yaml
    assert cal.sources[0].points == 6


def test_sweep_dtype_can_be_chosen():
    _, bf16 = api.calibrate([SWEEP], "cpu-local")
    _, fp32 = api.calibrate([SWEEP], "cpu-local", dtype="fp32")
    assert Params(fp32).gemm_fraction.value > 1.5 * Params(bf16).gemm_fraction.value  # 32 vs 18 GFLOP/s


def test_a_file_that_is_no_source_is_one_clear_error(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    with pytest.raises(ConfigError, match="not a calibration source"):
        api.calibrate([bad], "cpu-local")
    csv = tmp_path / "serving.csv"
    csv.write_text(
        "backend,model_path,isl,osl,batch_size,tp_size,silicon_ttft_ms,silicon_tpot_ms\n"
        "vllm,acme/unknown-7b,1024,128,8,1,100,10\n"
    )
    with pytest.raises(ConfigError, match="no model spec for 'acme/unknown-7b'"):
        api.calibrate([csv], "dgx-h100")


def test_serving_points_calibrate_the_step_costs(tmp_path, reference):
    """A slice of the calibration set (vLLM, Qwen3-32B at TP=4): the fit reproduces its TPOT."""
    rows = (reference / "serving" / "silicon_calibration.csv").read_text().splitlines()
    mine = [rows[0]] + [r for r in rows[1:] if ",vllm," in r and ",4,1," in r]
    src = tmp_path / "points.csv"
    src.write_text("\n".join(mine) + "\n")
    cal, profile = api.calibrate([src], "dgx-h100")
    tpot = next(e for e in cal.sources[0].errors if e.metric == "tpot")
    assert tpot.points == 30 and tpot.median_abs_pct < 10
    over = profile.efficiency.overhead("vllm")
    assert over.step_ms.basis == "fitted" and over.per_layer_us.basis == "assumed"


def test_shipped_h100_profile_meets_the_tpot_accuracy_bar(reference):
    """Issue 4: TPOT median |error| <= 15% on the calibration set, with the shipped parameters."""
    rows = api.evaluate_serving("dgx-h100", reference / "serving" / "silicon_calibration.csv")
    med, p90 = abs_error_stats([(tpot, point.tpot_ms) for point, tpot, _ in rows])
    assert len(rows) == 267 and med <= 15 and p90 <= 30


def test_collective_fits_stay_physical_on_noisy_few_point_data():
    """A loaded CPU box can time a larger all-reduce faster than a smaller one; the fit must not explode."""
    from tpplan.costmodel.profile_fit import fit_curve

    curve = fit_curve([(131072, 1500.0), (262144, 1400.0)], 2)
    measured = 262144 / (1400.0 * 1e3)  # busbw = algbw at 2 ranks
    assert curve.peak_busbw_gbps <= 10 * measured and curve.alpha_us <= 1400
    assert curve_time_us(curve, 200_000) == pytest.approx(1450, rel=0.1)


def _sweep_lines(tmp_path, keep) -> Path:
    """The first ok bf16 line of each TP degree in `keep` (a tiny sweep)."""
    import json

    lines, seen = [], set()
    for line in SWEEP.read_text().splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if d["status"] == "ok" and d["dtype"] == "bf16" and d["tp"] in keep and d["tp"] not in seen:
            seen.add(d["tp"])
            lines.append(line + "\n")
    path = tmp_path / "tiny_sweep.jsonl"
    path.write_text("".join(lines))
    return path


def test_one_message_size_scales_the_prior_curve_and_keeps_its_shape():
    from tpplan.costmodel.profile_fit import describe_fit, fit_curve
    from tpplan.specs import AllReduceCurve

    prior = AllReduceCurve(ranks=2, alpha_us=20.0, peak_busbw_gbps=2.0, half_bytes=4e4, shape=0.5)
    curve = fit_curve([(65536, 300.0)], 2, prior=prior)
    assert (curve.half_bytes, curve.shape) == (prior.half_bytes, prior.shape)
    assert curve_time_us(curve, 65536) == pytest.approx(300.0, rel=1e-3)
    assert curve.median_error_pct is None and "time scale only" in describe_fit(curve)


def test_two_sizes_fit_two_parameters_exactly_and_say_so():
    from tpplan.costmodel.profile_fit import describe_fit, fit_curve

    curve = fit_curve([(65536, 300.0), (262144, 900.0)], 2)
    assert curve.median_error_pct is None and "exact fit, no held-out check" in describe_fit(curve)


def test_a_two_line_sweep_is_an_exact_fit_not_a_perfect_one(tmp_path):
    cal, _ = api.calibrate([_sweep_lines(tmp_path, {1, 2})], "cpu-local", sweep_model="tiny")
    errors = {e.metric: e for e in cal.sources[0].errors}
    assert errors["step"].exact and errors["allreduce"].exact
    (text,) = [str(v) for k, v in cal.parameters.items() if k.startswith("allreduce.")]
    assert "1 point at 1 size: fitted a time scale only" in text and "median error" not in text


def test_a_one_line_sweep_fits_one_parameter(tmp_path):
    cal, profile = api.calibrate([_sweep_lines(tmp_path, {1})], "cpu-local", sweep_model="tiny")
    assert cal.sources[0].fitted == ["gemm_fraction"]
    assert Params(profile).overhead("tpplan-sweep").step_ms.basis != "fitted"


def test_the_full_sweep_is_not_an_exact_fit():
    cal, _ = api.calibrate([SWEEP], "cpu-local", sweep_model="tiny")
    assert not any(e.exact for e in cal.sources[0].errors)


def test_cpu_ranks_do_not_borrow_published_gpu_fractions():
    """A gloo profile's unfitted fractions are assumed, with why; a GPU profile keeps the published prior."""
    _, cpu = api.calibrate([SWEEP], "cpu-local", sweep_model="tiny")
    hbm = Params(cpu).hbm_fraction
    assert hbm.basis == "assumed" and "CPU" in hbm.source and "H100" not in hbm.source
    bare = io.load_profile("cpu-local").model_copy(update={"efficiency": None})
    assert Params(bare).gemm_fraction.basis == "assumed"
    gpu = io.load_profile("dgx-h100").model_copy(update={"efficiency": None})
    assert Params(gpu).hbm_fraction.basis == "published"


def test_the_ttft_note_holds_on_the_calibration_set(reference):
    """estimate serve says TTFT's error is several times TPOT's where it was fitted: check it is."""
    rows = api.evaluate_serving("dgx-h100", reference / "serving" / "silicon_calibration.csv")
    ttft, _ = abs_error_stats([(t, p.ttft_ms) for p, _, t in rows])
    tpot, _ = abs_error_stats([(t, p.tpot_ms) for p, t, _ in rows])
    assert ttft >= 2 * tpot
