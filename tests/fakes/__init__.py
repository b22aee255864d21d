"""Test doubles for what this machine lacks: NVML (a GPU driver) and a GPU server's /sys."""

from __future__ import annotations

from pathlib import Path

from fakes.nvml import FakeNvml, load_fixture

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "topology"
MACHINES = sorted(p.stem for p in FIXTURES.glob("*.yaml"))


def machine(name: str, root: Path, errors: dict[str, str] | None = None) -> tuple[FakeNvml, Path, dict]:
    """The fake NVML, a fake /sys tree built under `root`, and the fixture (with its `expect`)."""
    from fakes import sysfs  # not at import: `python -m fakes.sysfs` would import it twice

    fixture = load_fixture(FIXTURES / f"{name}.yaml")
    return FakeNvml(fixture, errors), sysfs.build(fixture, root), fixture
