"""Run the real CLI entry point in-process (the same code path as the console script)."""

from __future__ import annotations

import pytest

from tpplan.cli import main


def run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err
