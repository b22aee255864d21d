"""Real sweeps over real gloo process groups: correctness, PP and replicas, heads forms, each fault,
and resume after `kill -9`. Shapes and step counts are tiny so they stay fast on 2 loaded cores."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tpplan import api
from tpplan.records.requests import SweepRequest
from tpplan.sweep import read_results

pytestmark = pytest.mark.slow
FAST = dict(tokens=16, batch=2, warmup=1, iters=3, timeout_s=20.0)


def run(tmp_path: Path, model: str = "tiny", **kw):
    _, found, _ = api.sweep(
        model, "cpu-local", request=SweepRequest(**(FAST | kw)), out=tmp_path, progress=False
    )
    return {(m.tp, m.pp, m.replicas, m.dtype, m.heads_mode): m for m in found}


def test_tp_n_equals_tp_1_and_every_field_is_measured(tmp_path):
    found = run(tmp_path, tp=[1, 2], dtypes="fp32", layers=2)
    one, two = found[(1, 1, 1, "fp32", "even")], found[(2, 1, 1, "fp32", "even")]
    assert one.status == two.status == "ok"
    assert two.drift.allclose and two.drift.max_abs < 1e-4 and two.drift.hidden_max_abs < 1e-4
    assert 0 < two.drift.tolerance_ratio <= 1 and one.drift.tolerance_ratio == 0.0
    assert one.drift.max_abs == 0.0  # the TP=1 stack is the reference itself
    ar = two.allreduce
    assert ar.count_per_step == 2 * 2  # after attention and after MLP, in each of 2 layers
    assert ar.bytes == 16 * 2 * 512 * 4  # tokens x batch x hidden x fp32
    assert ar.latency_us.p50 > 0 and ar.busbw_gbps == pytest.approx(ar.algbw_gbps)  # n = 2
    assert 0 < ar.share_of_step < 1 and one.allreduce is None
    assert [r.heads for r in two.ranks] == [4, 4] and two.kv_heads_per_rank == [2, 2]
    for r in two.ranks:
        assert r.compute_ms > 0 and r.wait_ms > 0 and 0 < r.busy_frac <= 1 and r.cpu_ms > 0
    assert two.step_ms.n == 3 and two.step_ms.min <= two.step_ms.p50 <= two.step_ms.max
    assert (
        two.layers_measured == 2 and two.layers_total == 4 and two.step_ms_full_depth == 2 * two.step_ms.p50
    )
    assert any("scaled by depth" in n for n in two.notes)
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2 and {json.loads(line)["key"] for line in lines} == {one.key, two.key}


def test_pipeline_stages_and_concurrent_replicas(tmp_path):
    found = run(tmp_path, tp=[1], pp=[2], replicas=[2], dtypes="fp32", layers=2)
    m = found[(1, 2, 2, "fp32", "even")]
    assert m.status == "ok" and m.microbatches == 2 and m.gpus == 4
    assert m.drift.allclose and m.drift.hidden_max_abs < 1e-4
    by_rank = {r.rank: r for r in m.ranks}
    assert [(r.replica, r.stage) for r in m.ranks] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert by_rank[1].p2p_ms > 0 and by_rank[3].p2p_ms > 0  # stage 1 waits for stage 0's activations
    assert m.tokens_per_s_alone > 0 and m.replica_scaling == pytest.approx(
        m.tokens_per_s / (2 * m.tokens_per_s_alone)
    )


def test_uneven_and_padded_heads_are_measured_and_padded_matches(tmp_path):
    spec = tmp_path / "six.yaml"
    spec.write_text(
        "name: six-heads\narchitecture: LlamaForCausalLM\nnum_layers: 2\nhidden_size: 192\nnum_attention_heads: 6\n"
        "num_kv_heads: 6\nhead_dim: 32\nintermediate_size: 256\nvocab_size: 512\nmax_position_embeddings: 1024\n"
    )
    _, found, _ = api.sweep(
        str(spec),
        "cpu-local",
        request=SweepRequest(tp=[4], dtypes="fp32", **FAST),
        out=tmp_path / "default",
        progress=False,
    )
    assert [m.status for m in found] == ["skipped"]  # no engine accepts 6 heads at TP=4
    _, found, _ = api.sweep(
        str(spec),
        "cpu-local",
        request=SweepRequest(tp=[4], dtypes="fp32", heads="uneven,padded", **FAST),
        out=tmp_path / "both",
        progress=False,
    )
    uneven, padded = found
    assert (uneven.heads_mode, padded.heads_mode) == ("uneven", "padded")
    assert uneven.heads_per_rank == [2, 2, 1, 1] and padded.heads_per_rank == [2, 2, 2, 2]
    assert padded.padding_heads == 2 and uneven.padding_heads == 0
    assert padded.padding_cost_pct is not None and uneven.padding_cost_pct is None
    assert uneven.engines_accepting == padded.engines_accepting == []
    for m in (uneven, padded):
        assert m.status == "ok" and m.drift.allclose and m.drift.hidden_max_abs < 1e-4
        assert m.imbalance_pct is not None and m.busy_spread_ms >= 0


def test_each_fault_ends_its_case_and_the_sweep_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "TPPLAN_TEST_FAULTS",
        "exit:1:tp2-pp1-r1/fp32;sleep:3:tp2-pp2-r1/fp32;oom:2:tp2-pp2-r1/bf16",
    )
    t0 = time.monotonic()
    found = run(tmp_path, tp=[2], pp=[1, 2], dtypes="fp32,bf16", layers=2, timeout_s=3.0)
    died, after = found[(2, 1, 1, "fp32", "even")], found[(2, 1, 1, "bf16", "even")]
    hung, oom = found[(2, 2, 1, "fp32", "even")], found[(2, 2, 1, "bf16", "even")]
    assert (died.status, died.reason) == ("failed", "rank 1 exited with code 17")
    assert after.status == "ok" and after.step_ms is not None  # a rebuilt group ran the next case
    assert hung.status == "timeout" and "rank(s) 3 never answered" in hung.reason
    assert oom.status == "oom" and oom.reason.startswith("rank 2: out of memory")
    assert time.monotonic() - t0 < 120  # the sleeping rank (11 s) was not waited for
    assert len(read_results(tmp_path / "results.jsonl")) == 4


def test_kill_9_of_the_whole_sweep_then_resume_measures_each_layout_once(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "tpplan",
        "sweep",
        *shlex.split("tiny --tp 1,2 --dtype fp32,bf16 --tokens 16 --warmup 1 --iters 3 --layers 2"),
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (results.exists() and results.read_bytes().count(b"\n") >= 1):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and every rank it started
    proc.wait()
    before = results.read_bytes().count(b"\n")
    assert 1 <= before < 4
    deadline = time.monotonic() + 10
    while _running_in_group(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running_in_group(proc.pid)  # nothing of that sweep is left running
    again = subprocess.run([*cmd, "--resume", "--json"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    lines = results.read_text().splitlines()
    keys = [json.loads(line)["key"] for line in lines]  # every line is valid JSON
    assert len(keys) == 4 and len(set(keys)) == 4
    assert {m["status"] for m in json.loads(again.stdout)} == {"ok"}


def _running_in_group(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc/<pid>/stat."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields after "(comm)": state, ppid, pgrp
            found.append(int(stat.parent.name))
    return found
