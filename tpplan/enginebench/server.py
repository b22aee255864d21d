"""Start an engine's server from its launch text, wait for /health, and stop it without orphans.

The server runs as `bash -c TEXT` in a new session (its own process group), so stopping it is one
killpg: SIGTERM to the whole group (the API server and every TP worker it forked), a grace period,
then SIGKILL; the port is then checked free. Faults are returned as (status, reason), never raised:
an engine that will not start is a measurement too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HEALTH_POLL_S = 1.0
STOP_GRACE_S = 20.0  # vLLM shuts its workers down on SIGTERM within a few seconds
LOG_TAIL_LINES = 30

# What a server's log says when it did not start, most specific first: (status, pattern, reason).
_FAULTS = (
    ("port_in_use", r"[Aa]ddress already in use", "the port is already in use"),
    ("rejected", r"(unrecognized arguments|invalid choice|argument --[\w-]+: invalid|error: argument)", ""),
    ("failed_to_start", r"(OutOfMemory|out of memory|Cannot allocate memory|No available memory)", "OOM"),
)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def classify(log: str, default_status: str, *, default_reason: str) -> tuple[str, str]:
    """The status and reason a dead server's log points to (the last matching line names it)."""
    for status, pattern, reason in _FAULTS:
        hits = [ln for ln in log.splitlines() if re.search(pattern, ln)]
        if hits:
            return status, reason or hits[-1].strip()[:300]
    return default_status, default_reason


@dataclass
class Server:
    """A running server: its process group, port and log file."""

    text: str
    env: dict[str, str]
    port: int
    log_path: Path
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    startup_s: float | None = None
    _log: object = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            ["bash", "-c", self.text],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killpg reaches every worker it forks
            preexec_fn=_die_with_parent,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self, timeout_s: float = 2.0) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=timeout_s) as r:
                return r.status == 200
        except (OSError, ValueError):
            return False

    def wait_healthy(self, timeout_s: float) -> tuple[str, str]:
        """("ok", "") once /health answers 200; else the fault: exited early or timed out."""
        deadline = self.started_at + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                return classify(
                    log_tail(self.log_path, 200),
                    "failed_to_start",
                    default_reason=f"exited with code {code} before /health",
                )
            if self.healthy():
                self.startup_s = round(time.monotonic() - self.started_at, 2)
                return "ok", ""
            time.sleep(HEALTH_POLL_S)
        return "timeout", f"/health did not answer within {timeout_s:g} s"

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM the process group, SIGKILL what is left after `grace_s`, reap, free the port."""
        if self.proc is not None:
            pgid = self.proc.pid  # start_new_session: the group id is the leader's pid
            for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(pgid, sig)
                except ProcessLookupError:
                    break
                if _group_gone(pgid, wait_s, self.proc):
                    break
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        deadline = time.monotonic() + 10
        while not port_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.2)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the bench dies, even by kill -9 (Linux
    PR_SET_PDEATHSIG, kept across exec), so no server outlives the bench that started it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def _group_gone(pgid: int, wait_s: float, leader: subprocess.Popen) -> bool:
    """True once no process of the group is left (the leader reaped as it exits)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        leader.poll()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False
