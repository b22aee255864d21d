"""`tpplan demo`: the whole path on embedded defaults, as the README's first command runs it.

Each pipeline stage adds one step; every step reads only bundled inputs (sweeps/,
hardware_profiles/) and writes into the run directory, so the demo works from a fresh clone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from . import api, io

DEMO_MODEL = "llama-3.1-70b"
DEMO_PROFILE = "dgx-h100"
DEMO_GPUS = 16
DEMO_MAX_MODEL_LEN = 8192

Echo = Callable[[str], None]


def step_detect(out: Path, echo: Echo) -> None:
    """This machine through NVML and /sys; without a GPU, its CPUs as gloo ranks."""
    path = out / "profile.yaml"
    found = api.detect(path)
    p = found.profile
    if not found.gpu_found:
        echo(f"  no NVIDIA GPU found: {found.fallback_reason}")
    else:
        topo = p.topology
        echo(f"  {len(topo.gpus)} x {p.gpu.name}; NVLink domains {topo.domains}; {len(topo.hcas)} HCA port(s)")
    echo(f"  {p.description}")
    for w in found.warnings:
        echo(f"  warning: {w}")
    echo(f"  -> {path} (backend {p.backend}); use it with --profile {path}")


def step_candidates(out: Path, echo: Echo) -> None:
    model, profile, budget, found = api.plan_candidates(
        DEMO_MODEL, DEMO_PROFILE, "vllm", DEMO_GPUS, DEMO_MAX_MODEL_LEN, full_budget=True
    )
    io.write_text(out / "candidates.json", json.dumps([c.model_dump(mode="json") for c in found], indent=1))
    valid = [c for c in found if c.valid]
    echo(f"{model.name} on {budget} x {profile.gpu.name} ({profile.name}), vLLM, max_model_len {DEMO_MAX_MODEL_LEN}:")
    echo(f"  {len(found)} layouts use all {budget} GPUs; {len(valid)} are valid for vLLM and fit.")
    for c in found:
        verdict = "valid" if c.valid else "no: " + c.reasons[0].split(" [")[0]
        cross = "  [TP crosses the NVLink domain]" if c.crosses_nvlink_domain else ""
        echo(f"  TP={c.tp:<2} PP={c.pp:<2} replicas={c.replicas:<2} {verdict}{cross}")
    echo(f"  -> {out / 'candidates.json'}")


STEPS: list[tuple[str, Callable[[Path, Echo], None]]] = [
    ("detect: this machine's topology as a hardware profile", step_detect),
    ("candidates: which layouts are legal and fit", step_candidates),
]


def run(out: Path, echo: Echo = print) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for i, (title, step) in enumerate(STEPS, 1):
        echo(f"\n[{i}/{len(STEPS)}] {title}")
        step(out, echo)
