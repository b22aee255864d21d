"""Small sweep settings for unit tests: one place for the defaults, each test overrides what it is about."""

from __future__ import annotations

from tpplan.io import load_model
from tpplan.sweep.cases import SweepSettings


def small_settings(model: str = "tiny", **overrides) -> SweepSettings:
    """gloo, a few tokens, one layer, short timeout; `overrides` replace any field."""
    base = dict(
        model=load_model(model),
        backend="gloo",
        tokens=8,
        batch=1,
        layers=1,
        warmup=1,
        iters=2,
        timeout_s=5.0,
        atol=1e-2,
        rtol=1e-2,
    )
    return SweepSettings(**(base | overrides))
