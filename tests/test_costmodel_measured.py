"""`tpplan search --calibration`: measurements fitted into the profile, measured numbers used where they exist."""

from __future__ import annotations

import csv
import shutil

import pytest

from tpplan import api
from tpplan.api.search import prepare
from tpplan.errors import ConfigError
from tpplan.search import Config, score


@pytest.fixture(scope="module")
def qwen_csv(reference, tmp_path_factory):
    """The vLLM Qwen3-32B points of the calibration set at ISL 1024 / OSL 128 (15 measured points)."""
    src = reference / "serving" / "silicon_calibration.csv"
    rows = list(csv.DictReader(src.open()))
    keep = [r for r in rows if r["backend"] == "vllm" and r["isl"] == "1024" and r["osl"] == "128"]
    out = tmp_path_factory.mktemp("cal") / "qwen3-vllm.csv"
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep)
    return out, keep


def test_measured_serving_points_stand_in_for_the_estimates_at_their_configurations(qwen_csv):
    path, rows = qwen_csv
    prep = prepare(
        "qwen3-32b", ["dgx-h100"], input_tokens=1024, output_tokens=128, gpus=8, calibration=[str(path)]
    )
    assert any("fitted" in n and str(path) in n for n in prep.notes)
    measured = {(int(r["tp_size"]), int(r["batch_size"])): r for r in rows}
    seen = 0
    sizes = sorted({n for _, n in measured} | {1, 3})  # the measured loads and two that were not
    for c in (setup.at(n) for setup in prep.space.setups() for n in sizes):
        ev = prep.evaluate(c)
        row = (
            measured.get((c.tp, c.max_num_seqs)) if c.pp == 1 else None
        )  # without --concurrency: C = seqs/replica
        s = score(c, ev, q=prep.question)
        if row is None:
            assert s.basis == "fitted" and ev.measured is None
            continue
        seen += 1
        assert s.basis == "measured" and str(path) in ev.measured
        assert ev.estimate.ttft_ms == pytest.approx(float(row["silicon_ttft_ms"]), rel=1e-4)
        assert ev.estimate.tpot_ms == pytest.approx(float(row["silicon_tpot_ms"]), rel=1e-4)
        # Little's law per replica: C / (TTFT + (O-1)·TPOT) requests per second, O tokens each
        latency_s = (float(row["silicon_ttft_ms"]) + 127 * float(row["silicon_tpot_ms"])) / 1e3
        assert ev.estimate.output_tokens_per_s == pytest.approx(
            c.replicas * c.max_num_seqs / latency_s * 128, rel=1e-3
        )
        assert "measured" in ev.estimate.provenance
    assert seen == len(rows)  # every measured point is a configuration of the space (TP 2/4/8, C 8..128)


def test_a_calibrated_profile_replaces_the_profile_of_its_name(tmp_path, repo):
    out = tmp_path / "my-a100.yaml"
    api.calibrate([repo / "tests" / "data" / "nccl_all_reduce_perf_8xa100.txt"], "dgx-a100-80g", out=out)
    prep = prepare(
        "llama-3.1-70b",
        ["dgx-a100-80g"],
        input_tokens=1024,
        output_tokens=128,
        gpus=8,
        calibration=[str(out)],
    )
    plain = prepare("llama-3.1-70b", ["dgx-a100-80g"], input_tokens=1024, output_tokens=128, gpus=8)
    assert prep.profiles["dgx-a100-80g"] == api.load_profile(out) != plain.profiles["dgx-a100-80g"]
    assert prep.fingerprint != plain.fingerprint  # another study: its answers differ
    assert any("calibrated profile" in n for n in prep.notes)


def test_a_sweep_run_dir_is_fitted_into_its_profile(tmp_path, repo):
    run_dir = tmp_path / "sweep"
    run_dir.mkdir()
    shutil.copy(repo / "tests" / "data" / "sweep_cpu_results.jsonl", run_dir / "results.jsonl")
    prep = prepare("tiny", ["cpu-local"], input_tokens=64, output_tokens=16, calibration=[str(run_dir)])
    assert any("gemm_fraction" in n for n in prep.notes)
    c = Config("cpu-local", 1, 1, prep.space.arms[0].budget_gpus, 1, "bf16", "bf16")
    ev = prep.evaluate(c)
    assert (
        "sweep" in str(ev.estimate.provenance["gemm_fraction"])
        and score(c, ev, q=prep.question).basis == "fitted"
    )


def test_a_measurement_must_say_its_profile_when_there_are_several(repo):
    src = str(repo / "tests" / "data" / "nccl_all_reduce_perf_8xa100.txt")
    with pytest.raises(ConfigError, match="PROFILE=FILE"):
        prepare(
            "llama-3.1-70b",
            ["dgx-a100-80g", "dgx-h100"],
            input_tokens=1024,
            output_tokens=128,
            gpus=8,
            calibration=[src],
        )
    prep = prepare(
        "llama-3.1-70b",
        ["dgx-a100-80g", "dgx-h100"],
        input_tokens=1024,
        output_tokens=128,
        gpus=8,
        calibration=[f"dgx-a100-80g={src}"],
    )
    assert any(n.startswith("dgx-a100-80g: fitted allreduce") for n in prep.notes)
