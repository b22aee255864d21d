"""Small generators of bad inputs and blocked paths for the fault corpus (tests/test_fault_corpus*.py).

Everything is written into tmp_path at test time; nothing large is committed."""

from __future__ import annotations

import errno
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.cli_helpers import run

REPO = Path(__file__).resolve().parents[1]
NCCL = REPO / "tests" / "data" / "nccl_all_reduce_perf_8xa100.txt"
SWEEP_LINES = REPO / "tests" / "data" / "sweep_cpu_results.jsonl"
SERVING_HEAD = "backend,model_path,isl,osl,batch_size,tp_size,silicon_ttft_ms,silicon_tpot_ms\n"
SERVING_ROW = "vllm,meta-llama/Llama-3.1-70B-Instruct,1024,128,{batch},4,{ttft},{tpot}\n"
PROGRESS = ("search: trial ",)  # progress lines a search prints on stderr before its error
CASE_SECONDS = 5.0
CASE_PEAK_GROWTH_MIB = 300  # in-process: the peak RSS may not grow by more while one case runs
SUBPROCESS_AS_BYTES = 2 * 2**30  # RLIMIT_AS of a case run in a child: an alias bomb would pass it


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_error_line(capsys: pytest.CaptureFixture, args: list, *needles: str) -> str:
    """Run the CLI in-process; it must fail with exactly one stderr line holding every needle, no
    traceback, in under CASE_SECONDS and without the process peak growing past CASE_PEAK_GROWTH_MIB."""
    before, start = peak_rss_mib(), time.perf_counter()
    rc, out, err = run(capsys, *args)
    took = time.perf_counter() - start
    assert rc != 0, (args, out, err)
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(PROGRESS)]
    assert len(lines) == 1, err
    assert "Traceback" not in err + out
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert len(lines[0]) < 600, lines[0]  # a value rendered whole would be longer
    assert took < CASE_SECONDS, took
    assert peak_rss_mib() - before < CASE_PEAK_GROWTH_MIB
    return lines[0]


def limited_cli(args: list, timeout_s: float = 20) -> subprocess.CompletedProcess:
    """`python -m tpplan ARGS` in a child with an address-space limit (bounded memory)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (SUBPROCESS_AS_BYTES, SUBPROCESS_AS_BYTES))

    return subprocess.run(
        [sys.executable, "-m", "tpplan", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        preexec_fn=limit,
        cwd=REPO,
    )


def blocked_dir(tmp_path: Path) -> Path:
    """A directory path whose creation the OS refuses with EACCES/EPERM (root ignores mode bits, so
    root gets one under /sys, which refuses everyone)."""
    if os.geteuid() == 0:
        target = Path("/sys/kernel/tpplan-fault-test")
        try:
            target.mkdir()
        except PermissionError:
            return target
        target.rmdir()
        pytest.skip("no directory here refuses root")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    return locked / "sub"


def file_in_the_way(tmp_path: Path) -> Path:
    """A regular file where a directory is expected."""
    f = tmp_path / "a-file"
    f.write_text("x")
    return f


def disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file write fails with ENOSPC (a full disk cannot be made here)."""

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", full)


def alias_bomb(levels: int = 9, fan: int = 10) -> str:
    """'Billion laughs': `fan`^`levels` values from a few hundred bytes."""
    names = [f"l{i}" for i in range(levels)]
    text = f"{names[0]}: &{names[0]} [{', '.join(['lol'] * fan)}]\n"
    for prev, name in zip(names, names[1:], strict=False):
        text += f"{name}: &{name} [{', '.join(['*' + prev] * fan)}]\n"
    return text


def deep_yaml(depth: int) -> str:
    return "a: " + "[" * depth + "]" * depth + "\n"


def deep_json(depth: int) -> str:
    return '{"a": ' + "[" * depth + "]" * depth + "}"


def nccl_with(tmp_path: Path, old: str, new: str, name: str = "nccl.txt") -> Path:
    """The 8xA100 nccl-tests output with one value replaced."""
    text = NCCL.read_text()
    assert old in text
    p = tmp_path / name
    p.write_text(text.replace(old, new, 1))
    return p


def serving_csv(tmp_path: Path, ttft: str = "100", tpot: str = "12", batch: str = "16") -> Path:
    p = tmp_path / "serving.csv"
    p.write_text(
        SERVING_HEAD + SERVING_ROW.format(batch=8, ttft=90, tpot=11) + SERVING_ROW.format(**locals())
    )
    return p


def sweep_jsonl_with(tmp_path: Path, **step_ms: object) -> Path:
    """The CPU sweep's first result with step_ms fields replaced (json writes NaN/Infinity bare)."""
    rec = json.loads(SWEEP_LINES.read_text().splitlines()[0])
    rec["step_ms"].update(step_ms)
    p = tmp_path / "results.jsonl"
    p.write_text(json.dumps(rec) + "\n")
    return p


def hf_config(tmp_path: Path, name: str, body: dict) -> Path:
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps(body))
    return p


def yaml_file(tmp_path: Path, name: str, data: object) -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p
