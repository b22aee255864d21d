"""A progress bar with an ETA on stderr while a sweep runs (one plain line per case when not a terminal).

Work is counted in steps (warm-up + timed, twice for replicas: alone and together); the ETA is
the elapsed time per step done so far times the steps left, so spawn and build costs are in it.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from ..records import Measurement
from .cases import Case, SweepSettings

BAR = 24


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"


def case_label(c: Case | Measurement) -> str:
    return f"TP{c.tp}×PP{c.pp}×R{c.replicas} {c.dtype} {c.heads_mode}"


class Progress:
    def __init__(
        self, cases: list[Case], s: SweepSettings, stream: TextIO | None = None, enabled: bool = True
    ) -> None:
        self.steps = {c.key: (s.warmup + s.iters) * (2 if c.replicas > 1 else 1) for c in cases}
        self.total = sum(self.steps.values()) or 1
        self.n_cases, self.finished = len(cases), 0
        self.done_steps, self.case_steps = 0, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.t0 = time.monotonic()
        self.current = ""

    def start_group(self, ranks: int, cases: list[Case]) -> None:
        self.current = f"starting {ranks} rank(s)"
        self._draw()

    def tick(self, ev: dict) -> None:
        if ev.get("phase") in ("alone", "timed"):
            self.case_steps += 1
        self.current = (
            f"{ev.get('phase')} {ev.get('done')}/{ev.get('of')}" if ev.get("of") else str(ev.get("phase"))
        )
        self._draw()

    def case_done(self, m: Measurement) -> None:
        self.finished += 1
        self.done_steps += self.steps.get(m.key, 0)
        self.case_steps = 0
        if self.enabled and not self.tty:
            step = (
                f", step p50 {m.step_ms.p50:.2f} ms"
                if m.step_ms
                else f": {m.reason[:120]}"
                if m.reason
                else ""
            )
            self.stream.write(
                f"[{self.finished}/{self.n_cases}] {case_label(m)}: {m.status}{step} "
                f"(elapsed {_clock(self.elapsed)}, ETA {self.eta})\n"
            )
            self.stream.flush()
        self._draw()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    @property
    def eta(self) -> str:
        done = self.done_steps + self.case_steps
        if not done:
            return "?"
        return _clock(self.elapsed / done * max(self.total - done, 0))

    def _draw(self) -> None:
        if not self.tty:
            return
        frac = min((self.done_steps + self.case_steps) / self.total, 1.0)
        bar = "█" * int(frac * BAR) + "░" * (BAR - int(frac * BAR))
        line = (
            f"\r{bar} {frac:4.0%}  case {min(self.finished + 1, self.n_cases)}/{self.n_cases}  {self.current:<20}"
            f"  elapsed {_clock(self.elapsed)}  ETA {self.eta} "
        )
        self.stream.write(line)
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
