"""Process handling of `tpplan bench` against a fake `vllm` (tests/fakes/fake_vllm.py): health wait,
slow start, crash, refused flag, port in use, hang, death mid-run, no orphans, --resume, kill -9."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tpplan import enginebench
from tpplan.errors import ConfigError
from tpplan.jsonl import AppendFile, read_jsonl
from tpplan.records import BenchPredicted, BenchRecord, Layout

FAKE = Path(__file__).parent / "fakes" / "fake_vllm.py"
COMMON = {
    "profile": "cpu-local",
    "model": "tiny",
    "model_spec": "model.yaml",
    "dtype": "bf16",
    "max_num_seqs": 4,
}
pytestmark = pytest.mark.slow


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A dir with `vllm` (the fake) and `python`, as an engine venv's bin holds them."""
    d = tmp_path / "bin"
    d.mkdir()
    (d / "vllm").write_text(f"#!{sys.executable}\n" + FAKE.read_text())
    (d / "vllm").chmod(0o755)
    (d / "python").symlink_to(sys.executable)
    return d


def _env(bin_dir: Path) -> enginebench.EngineEnv:
    return enginebench.EngineEnv("vllm", bin_dir, "0.0-fake", "cpu", "/models/tiny")


def _predict(lay: Layout, c: int) -> BenchPredicted:
    return BenchPredicted(
        ttft_ms=5.0, tpot_ms=2.0, output_tokens_per_s=100.0, output_tokens_per_usd=1e6, basis="profile"
    )


def _run(tmp_path, bin_dir, monkeypatch, mode="ok", conc=(1, 2), tps=(1,), port=None, resume=False, **kw):
    monkeypatch.setenv("FAKE_VLLM_MODE", mode)
    monkeypatch.setenv("FAKE_VLLM_PIDS", str(tmp_path / "pids"))
    points = []
    for tp in tps:
        p = port or enginebench.free_port()
        text = f"CUDA_VISIBLE_DEVICES=0 vllm serve /models/tiny --tensor-parallel-size {tp} --port {p}"
        points.append(enginebench.BenchPoint(Layout(tp=tp), text, p, 0.05 * tp))
    settings = enginebench.Settings(
        8, 4, tuple(conc), start_timeout_s=kw.get("start", 20), client_timeout_s=kw.get("client", 30)
    )
    out = AppendFile(tmp_path / "out" / "bench.jsonl", BenchRecord, "tpplan bench", resume)
    msgs: list[str] = []
    try:
        written = enginebench.run_bench(
            points,
            _env(bin_dir),
            settings=settings,
            out=out,
            common=COMMON,
            predict=_predict,
            progress=msgs.append,
        )
    finally:
        out.close()
    return written, msgs


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose (its parent was killed; init reaps it)
    return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0


def _no_orphans(tmp_path: Path) -> None:
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)], "server or its worker outlived stop()"


def test_measures_each_concurrency_and_stops_the_whole_group(tmp_path, bin_dir, monkeypatch):
    written, msgs = _run(tmp_path, bin_dir, monkeypatch)
    assert [r.status for r in written] == ["ok", "ok"]
    r = written[1]
    assert r.concurrency == 2 and r.measured.completed == 8 and r.measured.tpot_ms_mean > 0
    assert r.ratio["tpot"] == pytest.approx(2.0 / r.measured.tpot_ms_mean, rel=1e-3)
    assert r.measured.output_tokens_per_usd == pytest.approx(
        r.measured.output_tokens_per_s * 3600 / 0.05, rel=1e-3
    )
    assert r.command.startswith("PATH=") and "vllm serve /models/tiny" in r.command
    assert "VLLM_CPU_OMP_THREADS_BIND=" in r.command and r.startup_s is not None
    assert any("healthy after" in m for m in msgs)
    _no_orphans(tmp_path)
    assert enginebench.port_free(int(r.command.rsplit("--port ", 1)[1]))


def test_slow_start_is_waited_for(tmp_path, bin_dir, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_DELAY", "2")
    written, _ = _run(tmp_path, bin_dir, monkeypatch, "slow", conc=(1,))
    assert written[0].status == "ok" and written[0].startup_s >= 2


@pytest.mark.parametrize(
    ("mode", "status", "reason"),
    [
        ("crash", "failed_to_start", "OOM"),
        ("reject", "rejected", "unrecognized arguments: --no-such-flag"),
        ("hang", "timeout", "/health did not answer within 3 s"),
    ],
)
def test_a_server_that_does_not_start_is_a_record_per_point(
    tmp_path, bin_dir, monkeypatch, mode, status, reason
):
    written, _ = _run(tmp_path, bin_dir, monkeypatch, mode, start=3)
    assert [r.status for r in written] == [status, status]
    assert reason in written[0].reason and "fake vllm serve" in written[0].log_tail
    assert written[0].measured is None and written[0].predicted is not None and not written[0].ratio
    if mode != "reject":
        _no_orphans(tmp_path)


def test_port_in_use_is_a_record_and_the_next_layout_still_runs(tmp_path, bin_dir, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        written, _ = _run(tmp_path, bin_dir, monkeypatch, port=busy, conc=(1,))
    assert written[0].status == "port_in_use" and str(busy) in written[0].reason
    written, _ = _run(tmp_path / "b", bin_dir, monkeypatch, conc=(1,), tps=(1, 2))
    assert [r.status for r in written] == ["ok", "ok"]


def test_a_server_dying_mid_run_is_recorded(tmp_path, bin_dir, monkeypatch):
    written, _ = _run(tmp_path, bin_dir, monkeypatch, "die_mid", conc=(1,))
    assert written[0].status in ("died", "client_failed")
    assert "engine core died" in written[0].log_tail or written[0].status == "client_failed"
    _no_orphans(tmp_path)


def test_a_client_that_hangs_times_out(tmp_path, bin_dir, monkeypatch):
    (bin_dir / "vllm").write_text((bin_dir / "vllm").read_text().replace("STEP_S = 0.002", "STEP_S = 5.0"))
    written, _ = _run(tmp_path, bin_dir, monkeypatch, conc=(1,), client=2)
    assert written[0].status == "timeout" and "client did not finish within 2 s" in written[0].reason
    _no_orphans(tmp_path)


def test_resume_runs_only_what_is_missing_and_survives_a_cut_line(tmp_path, bin_dir, monkeypatch):
    _run(tmp_path, bin_dir, monkeypatch, conc=(1,))
    path = tmp_path / "out" / "bench.jsonl"
    with open(path, "a") as f:  # kill -9 mid-write: half a line
        f.write('{"kind": "tpplan-bench", "engine": "vl')
    with pytest.raises(ConfigError, match="already holds 1 results"):
        _run(tmp_path, bin_dir, monkeypatch, conc=(1, 2))
    written, msgs = _run(tmp_path, bin_dir, monkeypatch, conc=(1, 2), resume=True)
    assert [r.concurrency for r in written] == [2]
    assert [r.concurrency for r in read_jsonl(path, BenchRecord, "tpplan bench")] == [1, 2]
    written, msgs = _run(tmp_path, bin_dir, monkeypatch, conc=(1, 2), resume=True)
    assert written == [] and "already measured" in msgs[0]


def test_kill_9_of_the_bench_takes_its_server_down(tmp_path, bin_dir, monkeypatch):
    """The bench killed by SIGKILL cannot stop its server; the server still goes (PR_SET_PDEATHSIG)."""
    port = enginebench.free_port()
    script = (
        "import os, sys, time; from pathlib import Path; from tpplan.enginebench import Server\n"
        f"s = Server('vllm serve m --port {port}', dict(os.environ, PATH='{bin_dir}:' + os.environ['PATH']),"
        f" {port}, Path('{tmp_path}/log'))\n"
        "s.start(); print(s.wait_healthy(20), flush=True); time.sleep(60)\n"
    )
    monkeypatch.setenv("FAKE_VLLM_PIDS", str(tmp_path / "pids"))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert "ok" in proc.stdout.readline()
    proc.kill()
    proc.wait()
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    deadline = time.monotonic() + 10
    while _alive(pids[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pids[0]), "the server outlived the bench killed by SIGKILL"
    with contextlib.suppress(
        ProcessLookupError
    ):  # the fake's worker (vLLM's own shut down with their server)
        os.kill(pids[1], signal.SIGKILL)


def test_client_result_parsing_names_a_missing_field(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"output_throughput": 1.0}))
    with pytest.raises(ConfigError, match="mean_ttft_ms"):
        enginebench.client.parse_result(p, 1.0)
