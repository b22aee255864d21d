"""The façade: loads and validates user input once, composes the stages, returns records.

The CLI is a thin shell over these functions; tests and scripts can call them directly.
Stages (topology, candidates, sweep, costmodel, search, emit) never import each other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from . import candidates as candidates_stage
from . import io
from .engines import ENGINES, Engine
from .errors import ConfigError, LayoutError
from .records import Candidate, Measurement
from .specs import HardwareProfile, ModelSpec

if TYPE_CHECKING:
    from .sweep.request import Request

Ref = str | os.PathLike


def load_model(ref: Ref) -> ModelSpec:
    return io.load_model(ref)


def load_profile(ref: Ref) -> HardwareProfile:
    return io.load_profile(ref)


def list_profiles() -> list[tuple[Path, HardwareProfile]]:
    return io.bundled_profiles()


def check_engine(engine: str) -> Engine:
    if engine not in ENGINES:
        raise ConfigError(f"{engine!r} is not an engine tpplan knows", field="--engine", expected=", ".join(ENGINES))
    return engine  # type: ignore[return-value]


def plan_candidates(
    model_ref: Ref,
    profile_ref: Ref,
    engine: str = "vllm",
    gpus: int | None = None,
    max_model_len: int | None = None,
    full_budget: bool = False,
    tp: list[int] | None = None,
    pp: list[int] | None = None,
) -> tuple[ModelSpec, HardwareProfile, int, list[Candidate]]:
    """Every layout of the GPU budget for `engine`; `tp`/`pp` restrict the degrees listed."""
    eng = check_engine(engine)
    model, profile = load_model(model_ref), load_profile(profile_ref)
    budget = gpus or profile.total_gpus
    for name, values in (("--tp", tp), ("--pp", pp)):
        too_big = [v for v in values or [] if v > budget]
        if too_big:
            raise LayoutError(
                f"{name} {too_big[0]} is larger than the GPU budget ({budget}: "
                f"{'--gpus' if gpus else f'{profile.total_gpus} GPUs of profile {profile.name}'}); "
                f"use {name} <= {budget} or raise --gpus"
            )
    found = candidates_stage.candidates(model, profile, eng, budget, max_model_len, full_budget)
    found = [c for c in found if (not tp or c.tp in tp) and (not pp or c.pp in pp)]
    return model, profile, budget, found


# ---- sweep ------------------------------------------------------------------------------------
def default_sweep_profile() -> str:
    """cpu-local on a machine without GPUs; with GPUs the user names their profile."""
    from .sweep.request import has_nvidia_gpu

    if has_nvidia_gpu():
        raise ConfigError("this machine has NVIDIA GPUs; name their profile", field="--profile",
                          expected="a profile (`tpplan detect --out gpus.yaml` writes one), or cpu-local for CPU ranks")
    return "cpu-local"


def sweep(model_ref: Ref, profile_ref: Ref | None, request: Request, out: Path, resume: bool = False,
          host: str = "127.0.0.1", progress: bool = True) -> tuple[ModelSpec, list[Measurement], str]:
    """Measure every case of `request` locally, or as one rank under torchrun.

    Returns the model, the measurements of the requested cases (including ones `--resume` found
    already recorded) and a sentence on the layer sample."""
    from .sweep import request as sweep_request
    from .sweep import runner

    model = load_model(model_ref)
    profile = load_profile(profile_ref or default_sweep_profile())
    check_host(host)
    world = runner.torchrun_world()
    limit = (world, f"the torchrun world of {world} ranks") if world else None
    settings, cases, skipped, layers_why = sweep_request.prepare(model, profile, request, limit)
    keys = {c.key for c in cases} | {m.key for m in skipped}
    if world:
        found = runner.run_under_torchrun(settings, [c for c in cases if c.ranks == world], skipped, out, resume)
    else:
        found = runner.run_sweep(settings, cases, skipped, out, resume, host, show_progress=progress)
    return model, [m for m in found if m.key in keys], layers_why


def check_host(host: str) -> None:
    """The rendezvous address must be one this machine can listen on."""
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, 0))
    except OSError as e:
        raise ConfigError(f"{host!r} cannot be listened on here ({e.strerror})", field="--host",
                          expected="an address of this machine, such as 127.0.0.1 (the default)") from None
