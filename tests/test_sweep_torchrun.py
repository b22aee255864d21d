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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_torchrun_agents_on_loopback_run_the_sweep(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    out = tmp_path / "run"
    cmd = [
        *launcher,
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{_free_port()}",
        "--rdzv-id",
        "tpplan-test",
        "--max-restarts",
        "0",
        "-m",
        "tpplan",
        "sweep",
        *shlex.split("tiny --tp 1,2 --dtype fp32 --tokens 16 --warmup 1 --iters 3 --layers 2"),
        "--out",
        str(out),
    ]
    agents = [
        subprocess.Popen(
            cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        outputs = [a.communicate(timeout=240) for a in agents]
    finally:
        for a in agents:
            if a.poll() is None:
                os.killpg(a.pid, signal.SIGKILL)
                a.wait()
    assert [a.returncode for a in agents] == [0, 0], outputs
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 1  # only the case the 2-rank torchrun world can run
    m = json.loads(lines[0])
    assert (m["tp"], m["status"], m["world_size"]) == (2, "ok", 2)
    assert m["drift"]["allclose"] and m["allreduce"]["count_per_step"] == 4
    assert sum("tiny-llama" in o for o, _ in outputs) == 1  # rank 0 prints the table, rank 1 nothing
