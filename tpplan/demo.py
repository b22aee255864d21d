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


DEMO_WORKLOAD = {"input_tokens": 1024, "output_tokens": 256, "concurrency": 64}


def step_estimate(out: Path, echo: Echo) -> None:
    """The cost model's view of the valid full-budget layouts of the candidates step."""
    from .records import Layout
    from .specs import Workload

    workload = Workload(**DEMO_WORKLOAD)
    _, _, _, found = api.plan_candidates(DEMO_MODEL, DEMO_PROFILE, "vllm", DEMO_GPUS, DEMO_MAX_MODEL_LEN, full_budget=True)
    layouts = [Layout(tp=c.tp, pp=c.pp, replicas=c.replicas) for c in found if c.valid]
    estimates = [api.estimate_serve(DEMO_MODEL, DEMO_PROFILE, lay, workload) for lay in layouts]
    io.write_text(out / "estimates.json", json.dumps([e.model_dump(mode="json") for e in estimates], indent=1))
    echo(f"  ISL {workload.input_tokens}, OSL {workload.output_tokens}, {workload.concurrency} requests in flight "
         f"over {DEMO_GPUS} GPUs (vLLM, bf16); cost model fitted on H100 serving measurements:")
    for e in sorted(estimates, key=lambda e: -e.output_tokens_per_usd):
        b = e.breakdown
        echo(f"  {e.layout.label():<12} TTFT {e.ttft_ms:7.1f} ms  TPOT {e.tpot_ms:6.2f} ms  "
             f"{e.output_tokens_per_s:7,.0f} tok/s  {e.output_tokens_per_usd:9,.0f} tok/$  "
             f"(all-reduce {100 * b.allreduce_ms / b.total_ms:.0f}% of a step, TP over {e.tp_fabric})")
    echo(f"  -> {out / 'estimates.json'}")


STEPS: list[tuple[str, Callable[[Path, Echo], None]]] = [
    ("candidates: which layouts are legal and fit", step_candidates),
    ("estimate: TTFT, TPOT and tokens per dollar of the valid layouts", step_estimate),
]


def run(out: Path, echo: Echo = print) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for i, (title, step) in enumerate(STEPS, 1):
        echo(f"\n[{i}/{len(STEPS)}] {title}")
        step(out, echo)
