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


def step_sweep(out: Path, echo: Echo) -> None:
    from .sweep import RESULTS
    from .sweep.request import Request

    run_dir = out / "sweep"
    (run_dir / RESULTS).unlink(missing_ok=True)  # the demo re-measures on every run
    request = Request(tp=[1, 2], dtypes="fp32,bf16", tokens=64, batch=2, warmup=2, iters=8)
    model, found, layers_why = api.sweep("tiny", "cpu-local", request, run_dir, progress=False)
    echo(f"{model.name} on local CPU ranks (gloo), {layers_why}, 64x2 tokens per step, 8 timed steps:")
    for m in found:
        if m.status != "ok" or m.step_ms is None:
            echo(f"  TP={m.tp} {m.dtype}: {m.status}: {m.reason}")
            continue
        ar = f"all-reduce p50 {m.allreduce.latency_us.p50:,.0f} us ({m.allreduce.share_of_step:.0%} of step)" \
            if m.allreduce else "no all-reduce"
        drift = f"vs TP=1 max|d| {m.drift.max_abs:.1e} {'ok' if m.drift.allclose else 'FAILS allclose'}" if m.drift else ""
        echo(f"  TP={m.tp} {m.dtype}: step p50 {m.step_ms.p50:.1f} ms, {ar}, {m.tokens_per_s:,.0f} tok/s; {drift}")
    echo(f"  -> {run_dir / RESULTS}")


STEPS: list[tuple[str, Callable[[Path, Echo], None]]] = [
    ("candidates: which layouts are legal and fit", step_candidates),
    ("sweep: real sharded forward passes on this machine, measured", step_sweep),
]


def run(out: Path, echo: Echo = print) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for i, (title, step) in enumerate(STEPS, 1):
        echo(f"\n[{i}/{len(STEPS)}] {title}")
        step(out, echo)
