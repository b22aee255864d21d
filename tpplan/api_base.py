"""What every half of the façade shares: input references, loading, the engine name check.

Kept apart from api.py so that api_costmodel, api_search and api_report can import it without a cycle.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import io
from .engines import ENGINES, Engine
from .errors import ConfigError
from .specs import HardwareProfile, ModelSpec

Ref = str | os.PathLike


def load_model(ref: Ref) -> ModelSpec:
    return io.load_model(ref)


def load_profile(ref: Ref) -> HardwareProfile:
    return io.load_profile(ref)


def list_profiles() -> list[tuple[Path, HardwareProfile]]:
    return io.bundled_profiles()


def check_engine(engine: str) -> Engine:
    if engine not in ENGINES:
        raise ConfigError(
            f"{engine!r} is not an engine tpplan knows", field="--engine", expected=", ".join(ENGINES)
        )
    return engine  # type: ignore[return-value]
