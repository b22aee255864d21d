"""Shared fixtures. `../shared/reference` sits beside the checkout in dev and CI, never in a
user's clone: tests that compare against it skip when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_REFERENCE = REPO.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference() -> Path:
    if not SHARED_REFERENCE.is_dir():
        pytest.skip("../shared/reference is not beside this checkout")
    return SHARED_REFERENCE


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """`tpplan demo` once per session (a real sweep, search, plan and report; ~20 s on 2 cores):
    the run directory and the lines it printed."""
    from tpplan import demo

    out = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    demo.run(out, lines.append)
    return out, lines
