"""The same worker under torchrun: two agents with --nnodes 2 rendezvous (c10d) on loopback."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SWEEP = "tiny --tp 1,2 --dtype fp32 --tokens 16 --warmup 1 --iters 3 --layers 2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_agents(out: Path, sweep: str, restarts: int, env: dict | None = None) -> list[tuple[int, str]]:
    """Two `torchrun --nnodes 2` agents running `tpplan sweep` on loopback; (exit code, stdout) each."""
    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    cmd = [*launcher, *shlex.split("--nnodes 2 --nproc-per-node 1 --rdzv-backend c10d --rdzv-id tpplan-test"),
           "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "--max-restarts", str(restarts),
           "-m", "tpplan", "sweep", *shlex.split(sweep), "--out", str(out)]  # fmt: skip
    agents = [
        subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, **(env or {})))
        for _ in range(2)
    ]  # fmt: skip
    try:
        outputs = [a.communicate(timeout=240)[0] for a in agents]
    finally:
        for a in agents:
            if a.poll() is None:
                os.killpg(a.pid, signal.SIGKILL)
                a.wait()
        _kill_ranks_of(out)
    return [(a.returncode, o) for a, o in zip(agents, outputs, strict=True)]


def _kill_ranks_of(out: Path) -> None:
    """torchrun starts each rank in a session of its own: kill any rank of this test's sweep left behind."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(out).encode() in cmdline.read_bytes():
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except OSError:
            pass


def test_two_torchrun_agents_on_loopback_run_the_sweep(tmp_path):
    done = _two_agents(tmp_path, SWEEP, restarts=0)
    assert [code for code, _ in done] == [0, 0], done
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 1  # only the case the 2-rank torchrun world can run
    m = json.loads(lines[0])
    assert (m["tp"], m["status"], m["world_size"]) == (2, "ok", 2)
    assert m["drift"]["allclose"] and m["allreduce"]["count_per_step"] == 4
    assert sum("tiny-llama" in out for _, out in done) == 1  # rank 0 prints the table, rank 1 nothing


def test_a_rank_lost_under_torchrun_is_recorded_and_resume_finishes(tmp_path):
    # torchrun's own restarts (--max-restarts) can pair agents of different attempts; the sweep's
    # way across nodes is the same as locally: the fault is a result, and --resume goes on.
    sweep = SWEEP.replace("fp32", "fp32,bf16")
    done = _two_agents(tmp_path, sweep, restarts=0, env={"TPPLAN_TEST_FAULTS": "exit:1:tp2-pp1-r1/fp32"})
    assert all(code != 0 for code, _ in done)
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 1
    failed = json.loads(lines[0])
    assert (failed["dtype"], failed["status"]) == ("fp32", "failed") and failed["reason"].startswith(
        "rank 0: "
    )
    done = _two_agents(tmp_path, sweep + " --resume", restarts=0)
    assert [code for code, _ in done] == [0, 0], done
    found = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [(m["dtype"], m["status"]) for m in found] == [("fp32", "failed"), ("bf16", "ok")]
