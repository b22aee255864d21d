"""The progress display: a bar with an ETA on a terminal, one line per case otherwise."""

from __future__ import annotations

import io

from tests.sweep_helpers import small_settings
from tpplan.sweep.cases import Case
from tpplan.sweep.collect import failure
from tpplan.sweep.progress import Progress

S = small_settings(iters=3)
CASES = [
    Case(key=k, tp=2, pp=1, replicas=1, dtype="fp32", heads_mode="even", engines_accepting=[]) for k in "ab"
]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_a_bar_with_eta():
    out = Tty()
    p = Progress(CASES, S, stream=out)
    p.start_group(2, CASES)
    assert "ETA ?" in out.getvalue()  # nothing done yet: no estimate
    for i in range(1, 5):
        p.tick({"phase": "timed" if i > 1 else "built", "done": i, "of": 4})
    p.case_done(failure(S, CASES[0], status="oom", reason="rank 1: out of memory", ranks_per_core=1.0))
    last = out.getvalue().split("\r")[-1]
    assert "50%" in last and "case 2/2" in last and "ETA 0:0" in last and "█" in last


def test_a_log_gets_one_line_per_case():
    out = io.StringIO()
    p = Progress(CASES, S, stream=out)
    p.case_done(failure(S, CASES[0], status="timeout", reason="rank 1 never answered", ranks_per_core=1.0))
    assert out.getvalue().startswith(
        "[1/2] TP2×PP1×R1 fp32 even: timeout: rank 1 never answered (elapsed 0:00, ETA"
    )
    assert "\r" not in out.getvalue()
