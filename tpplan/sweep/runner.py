"""Launch a sweep's process groups locally, watch them, and record every case's outcome.

One process group per world size, reused by all the cases of that size (spawning ranks and
building communicators is the expensive part). A fault ends the group: the case it hit is
recorded with status oom / timeout / failed and the rank's reason, the group is rebuilt, and the
sweep goes on with the next case. No torch in this process: ranks are `python -m
tpplan.sweep.worker` children, and each talks back in `@tpplan {json}` lines on stdout.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..records import Measurement
from . import collect
from .cases import Case, SweepJob, SweepSettings, cores_ratio
from .faults import PRIORITY
from .progress import Progress
from .results import ResultsFile

EVENT_PREFIX = "@tpplan "  # = worker.EVENT_PREFIX (not imported: the worker module imports torch)
START_S = 300  # a loaded machine may take minutes to start 8 ranks importing torch
FAULT_GRACE_S = 2.0  # after the first fault signal, how long to wait for the others (to find the root cause)


@dataclass
class Fault:
    kind: str  # oom | died | timeout | failed
    reason: str

    @property
    def status(self) -> str:
        return "failed" if self.kind == "died" else self.kind


@dataclass
class GroupLaunch:
    """One process group of `ranks` local processes running `cases` in order."""

    settings: SweepSettings
    cases: list[Case]
    ranks: int
    host: str
    on_result: Callable[[Measurement], None]
    on_tick: Callable[[dict], None]
    procs: list[subprocess.Popen] = field(default_factory=list)
    events: queue.Queue = field(default_factory=queue.Queue)
    stderr_tails: list[deque] = field(default_factory=list)

    def start(self, job_path: Path) -> None:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.bind((self.host, 0))  # port 0: the OS picks a free one, and we hold it until rank 0 serves it
        sock.listen(128)
        port = sock.getsockname()[1]
        try:
            for rank in range(self.ranks):
                env = dict(
                    os.environ,
                    RANK=str(rank),
                    WORLD_SIZE=str(self.ranks),
                    LOCAL_RANK=str(rank),
                    LOCAL_WORLD_SIZE=str(self.ranks),
                    MASTER_ADDR=self.host,
                    MASTER_PORT=str(port),
                    TPPLAN_WATCH_STDIN="1",
                    PYTHONUNBUFFERED="1",
                    OMP_NUM_THREADS="1",
                )
                env.pop("TORCHELASTIC_RUN_ID", None)
                fds: tuple[int, ...] = ()
                if rank == 0:
                    env["TPPLAN_STORE_FD"], fds = str(sock.fileno()), (sock.fileno(),)
                proc = subprocess.Popen(
                    [sys.executable, "-m", "tpplan.sweep.worker", str(job_path)],
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    pass_fds=fds,
                )
                self.procs.append(proc)
                self.stderr_tails.append(deque(maxlen=20))
                threading.Thread(target=self._read_out, args=(rank, proc), daemon=True).start()
                threading.Thread(target=self._read_err, args=(rank, proc), daemon=True).start()
        finally:
            sock.close()  # rank 0 has its own copy of the listening socket

    def _read_out(self, rank: int, proc: subprocess.Popen) -> None:
        for raw in proc.stdout:  # type: ignore[union-attr]
            line = raw.decode(errors="replace")
            if line.startswith(EVENT_PREFIX):
                self.events.put((rank, json.loads(line[len(EVENT_PREFIX) :])))
        proc.wait()
        self.events.put((rank, {"ev": "exit", "code": proc.returncode}))

    def _read_err(self, rank: int, proc: subprocess.Popen) -> None:
        for raw in proc.stderr:  # type: ignore[union-attr]
            line = raw.decode(errors="replace").rstrip()
            if line:
                self.stderr_tails[rank].append(line)

    def watch(self) -> tuple[list[str], Fault | None]:
        """Until every case is recorded or a fault ends the group: keys recorded, and the fault."""
        recorded: list[str] = []
        faults: list[Fault] = []
        reported: set[int] = set()
        exited: dict[int, int] = {}
        last, ready, grace_until = time.monotonic(), False, None
        silence_s = START_S
        while True:
            try:
                rank, ev = self.events.get(timeout=0.2)
            except queue.Empty:
                rank, ev = -1, {}
            now = time.monotonic()
            kind = ev.get("ev")
            if kind:
                last = now
            if kind == "ready":
                ready, silence_s = True, idle_limit_s(self.settings)
            elif kind == "tick":
                self.on_tick(ev)
            elif kind == "result":
                m = Measurement.model_validate(ev["measurement"])
                self.on_result(m)
                recorded.append(m.key)
            elif kind == "fault":
                reported.add(rank)
                faults.append(Fault(ev["status"], ev["reason"]))
            elif kind == "exit":
                exited[rank] = ev["code"]
                if ev["code"] != 0 and rank not in reported:
                    tail = next((t for t in reversed(self.stderr_tails[rank]) if t.strip()), "")
                    faults.append(
                        Fault(
                            "died",
                            f"rank {rank} exited with code {ev['code']}"
                            + (f": {tail[:200]}" if tail else ""),
                        )
                    )
            if len(exited) == self.ranks and not faults:
                if len(recorded) == len(self.cases):
                    return recorded, None
                faults.append(Fault("died", "every rank exited before the sweep was done"))
            if not faults and now - last > silence_s:
                what = "no rank reported progress" if ready else "the process group did not start"
                faults.append(
                    Fault("timeout", f"{what} for {silence_s:.0f} s (a rank hung outside a collective?)")
                )
            if faults and grace_until is None:
                grace_until = now + FAULT_GRACE_S
            if grace_until is not None and (now >= grace_until or len(exited) == self.ranks):
                fault = min(faults, key=lambda f: PRIORITY.index(f.kind))
                silent = [r for r in range(self.ranks) if r not in reported and r not in exited]
                if fault.kind == "timeout" and silent:
                    fault.reason += f"; rank(s) {', '.join(map(str, silent))} never answered"
                return recorded, fault

    def stop(self) -> None:
        """Kill what is still running (each rank by its own pid) and reap it."""
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait()
            for stream in (p.stdin, p.stdout, p.stderr):
                if stream:
                    stream.close()


def idle_limit_s(s: SweepSettings) -> float:
    """How long a group may go without any event before it counts as hung (ranks' own store waits
    give up at the same bound, see worker.IDLE_WAIT_FACTOR)."""
    return 20 * s.timeout_s + 90


def run_sweep(
    settings: SweepSettings,
    cases: list[Case],
    *,
    skipped: list[Measurement],
    out_dir: Path,
    resume: bool,
    host: str = "127.0.0.1",
    show_progress: bool = False,
) -> list[Measurement]:
    """Measure every case not already in out_dir/results.jsonl; returns every measurement of the file."""
    results = ResultsFile(out_dir, resume)
    try:
        for m in skipped:
            if m.key not in results.keys:
                results.append(m)
        todo = [c for c in cases if c.key not in results.keys]
        progress = Progress(todo, settings, enabled=show_progress)
        sizes = sorted({c.ranks for c in todo})
        for ranks in sizes:
            remaining = [c for c in todo if c.ranks == ranks]
            while remaining:
                _launch(settings, remaining, ranks, host, results, progress, out_dir)
                remaining = [c for c in remaining if c.key not in results.keys]
        progress.finish()
        return results.measurements
    finally:
        results.close()


def _launch(
    settings: SweepSettings,
    cases: list[Case],
    ranks: int,
    host: str,
    results: ResultsFile,
    progress: Progress,
    out_dir: Path,
) -> None:
    def record(m: Measurement) -> None:
        results.append(m)
        progress.case_done(m)

    launch = GroupLaunch(settings, cases, ranks, host, record, progress.tick)
    with tempfile.TemporaryDirectory(prefix=".job-", dir=out_dir) as tmp:
        job_path = Path(tmp) / "job.json"
        job_path.write_text(SweepJob(settings=settings, cases=cases).model_dump_json())
        progress.start_group(ranks, cases)
        try:
            launch.start(job_path)
            recorded, fault = launch.watch()
        finally:
            launch.stop()
    if fault is not None:
        victim = next(c for c in cases if c.key not in recorded)
        record(
            collect.failure(
                settings, victim, status=fault.status, reason=fault.reason, ranks_per_core=cores_ratio(ranks)
            )
        )


# ---- across nodes: every rank is a `tpplan sweep` process started by torchrun ---------------------
def torchrun_world() -> int | None:
    """The torchrun world size when this process is one of its ranks, else None."""
    return int(os.environ["WORLD_SIZE"]) if "TORCHELASTIC_RUN_ID" in os.environ else None


def run_under_torchrun(
    settings: SweepSettings, cases: list[Case], *, skipped: list[Measurement], out_dir: Path, resume: bool
) -> list[Measurement]:
    """Run `cases` (those of the torchrun world's size) as this rank; rank 0 writes results.jsonl.

    After a torchrun restart (--max-restarts) the file is resumed, so finished cases are not redone."""
    from . import worker  # imports torch

    rank = int(os.environ["RANK"])
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    results = ResultsFile(out_dir, resume or restarted) if rank == 0 else None
    if results is None:
        worker.run(SweepJob(settings=settings, cases=cases), lambda m: None)
        return []
    progress = Progress([c for c in cases if c.key not in results.keys], settings)

    def record(m: Measurement) -> None:
        results.append(m)
        progress.case_done(m)

    try:
        for m in skipped:
            if m.key not in results.keys:
                results.append(m)
        worker.run(SweepJob(settings=settings, cases=cases), record, skip=set(results.keys))
        return results.measurements
    finally:
        results.close()
