"""`tpplan sweep`: measure real collectives and layer steps locally, or as one rank under torchrun.

torch is imported only when a sweep runs (tpplan.sweep.runner)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..records import Measurement
from ..specs import ModelSpec
from ..sweep.summary import summarize  # noqa: F401  (the CLI reads it here)
from .refs import Ref, load_model, load_profile

if TYPE_CHECKING:
    from ..records.requests import SweepRequest


def default_sweep_profile() -> str:
    """cpu-local on a machine without GPUs; with GPUs the user names their profile."""
    from ..sweep.request import has_nvidia_gpu

    if has_nvidia_gpu():
        raise ConfigError(
            "this machine has NVIDIA GPUs; name their profile",
            field="profile",
            expected="a profile (`tpplan detect --out gpus.yaml` writes one), or cpu-local for CPU ranks",
        )
    return "cpu-local"


def sweep(
    model_ref: Ref,
    profile_ref: Ref | None,
    *,
    request: SweepRequest,
    out: Path,
    resume: bool = False,
    host: str = "127.0.0.1",
    progress: bool = True,
) -> tuple[ModelSpec, list[Measurement], str]:
    """Measure every case of `request` locally, or as one rank under torchrun.

    Returns the model, the measurements of the requested cases (including ones `--resume` found
    already recorded) and a sentence on the layer sample."""
    from ..sweep import request as sweep_request
    from ..sweep import runner

    model = load_model(model_ref)
    profile = load_profile(profile_ref or default_sweep_profile())
    check_host(host)
    world = runner.torchrun_world()
    limit = (world, f"the torchrun world of {world} ranks") if world else None
    settings, cases, skipped, layers_why = sweep_request.prepare(model, profile, r=request, rank_limit=limit)
    keys = {c.key for c in cases} | {m.key for m in skipped}
    if world:
        found = runner.run_under_torchrun(
            settings, [c for c in cases if c.ranks == world], skipped=skipped, out_dir=out, resume=resume
        )
    else:
        found = runner.run_sweep(
            settings, cases, skipped=skipped, out_dir=out, resume=resume, host=host, show_progress=progress
        )
    return model, [m for m in found if m.key in keys], layers_why


def check_host(host: str) -> None:
    """The rendezvous address must be one this machine can listen on."""
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, 0))
    except OSError as e:
        raise ConfigError(
            f"{host!r} cannot be listened on here ({e.strerror})",
            field="host",
            expected="an address of this machine, such as 127.0.0.1 (the default)",
        ) from None
