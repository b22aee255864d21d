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
DEMO_MODEL_PATH = "meta-llama/Llama-3.1-70B-Instruct"  # what `vllm serve` loads (HF repo id)

Echo = Callable[[str], None]


def step_detect(out: Path, echo: Echo) -> None:
    """This machine through NVML and /sys; without a GPU, its CPUs as gloo ranks."""
    path = out / "profile.yaml"
    found = api.detect(path)
    p = found.profile
    if not found.gpu_found:
        echo(f"  {found.fallback_line()}")
    else:
        topo = p.topology
        echo(
            f"  {len(topo.gpus)} x {p.gpu.name}; NVLink domains {topo.domains}; {len(topo.hcas)} HCA port(s)"
        )
    echo(f"  {p.description}")
    for w in found.warnings:
        echo(f"  warning: {w}")
    echo(f"  -> {path} (backend {p.backend}); use it with --profile {path}")


def _full_budget_candidates():
    """The demo's question to the candidates stage (the candidates and estimate steps both ask it)."""
    return api.list_candidates(
        DEMO_MODEL,
        DEMO_PROFILE,
        engine="vllm",
        gpus=DEMO_GPUS,
        max_model_len=DEMO_MAX_MODEL_LEN,
        full_budget=True,
    )


def step_candidates(out: Path, echo: Echo) -> None:
    model, profile, budget, found = _full_budget_candidates()
    io.write_text(out / "candidates.json", json.dumps([c.model_dump(mode="json") for c in found], indent=1))
    valid = [c for c in found if c.valid]
    echo(
        f"{model.name} on {budget} x {profile.gpu.name} ({profile.name}), vLLM, max_model_len {DEMO_MAX_MODEL_LEN}:"
    )
    echo(f"  {len(found)} layouts use all {budget} GPUs; {len(valid)} are valid for vLLM and fit.")
    for c in found:
        verdict = "valid" if c.valid else "no: " + c.reasons[0].uncited()
        cross = "  [TP crosses the NVLink domain]" if c.crosses_nvlink_domain else ""
        echo(f"  TP={c.tp:<2} PP={c.pp:<2} replicas={c.replicas:<2} {verdict}{cross}")
    echo(f"  -> {out / 'candidates.json'}")


def step_sweep(out: Path, echo: Echo) -> None:
    from .records.requests import SweepRequest
    from .sweep import RESULTS

    run_dir = out / "sweep"
    (run_dir / RESULTS).unlink(missing_ok=True)  # the demo re-measures on every run
    # TP=3 splits tiny's 8 heads 3/3/2 (uneven, as the seed's 36 heads at TP=8): the report shows
    # the imbalance. Three ranks on two cores oversubscribe them; the sweep marks that case.
    request = SweepRequest(
        tp=[1, 2, 3], dtypes="fp32,bf16", heads="uneven", tokens=64, batch=2, warmup=2, iters=8
    )
    model, found, layers_why = api.sweep("tiny", "cpu-local", request=request, out=run_dir, progress=False)
    echo(f"{model.name} on local CPU ranks (gloo), {layers_why}, 64x2 tokens per step, 8 timed steps:")
    for m in found:
        if m.status != "ok" or m.step_ms is None:
            echo(f"  TP={m.tp} {m.dtype}: {m.status}: {m.reason}")
            continue
        ar = (
            f"all-reduce p50 {m.allreduce.latency_us.p50:,.0f} us ({m.allreduce.share_of_step:.0%} of step)"
            if m.allreduce
            else "no all-reduce"
        )
        drift = (
            f"vs TP=1 max|d| {m.drift.max_abs:.1e} {'ok' if m.drift.allclose else 'FAILS allclose'}"
            if m.drift
            else ""
        )
        heads = f" heads {'/'.join(map(str, m.heads_per_rank))}" if m.heads_mode != "even" else ""
        echo(
            f"  TP={m.tp} {m.dtype}{heads}: step p50 {m.step_ms.p50:.1f} ms, {ar}, {m.tokens_per_s:,.0f} tok/s; {drift}"
        )
    echo(f"  -> {run_dir / RESULTS}")


DEMO_WORKLOAD = {"input_tokens": 1024, "output_tokens": 256, "concurrency": 64}


def step_estimate(out: Path, echo: Echo) -> None:
    """The cost model's view of the valid full-budget layouts of the candidates step."""
    from .records import Layout
    from .specs import Workload

    workload = Workload(**DEMO_WORKLOAD)
    _, _, _, found = _full_budget_candidates()
    layouts = [Layout(tp=c.tp, pp=c.pp, replicas=c.replicas) for c in found if c.valid]
    estimates = [
        api.estimate_serve(DEMO_MODEL, DEMO_PROFILE, layout=lay, workload=workload) for lay in layouts
    ]
    io.write_text(
        out / "estimates.json", json.dumps([e.model_dump(mode="json") for e in estimates], indent=1)
    )
    echo(
        f"  ISL {workload.input_tokens}, OSL {workload.output_tokens}, {workload.concurrency} requests in flight "
        f"over {DEMO_GPUS} GPUs (vLLM, bf16); cost model fitted on H100 serving measurements:"
    )
    for e in sorted(estimates, key=lambda e: -e.output_tokens_per_usd):
        b = e.breakdown
        echo(
            f"  {e.layout.label():<12} TTFT {e.ttft_ms:7.1f} ms  TPOT {e.tpot_ms:6.2f} ms  "
            f"{e.output_tokens_per_s:7,.0f} tok/s  {e.output_tokens_per_usd:9,.0f} tok/$  "
            f"(all-reduce {100 * b.allreduce_ms / b.total_ms:.0f}% of a step, TP over {e.tp_fabric})"
        )
    echo(f"  -> {out / 'estimates.json'}")


DEMO_SEARCH = {"input_tokens": 2048, "output_tokens": 256, "slo_tpot_ms": 50.0}


def step_search(out: Path, echo: Echo) -> None:
    """The Optuna study on the real H100 profile; writes plan.yaml, the file the emit step reads."""
    w = DEMO_SEARCH
    result, _ = api.search(
        DEMO_MODEL,
        [DEMO_PROFILE],
        input_tokens=w["input_tokens"],
        output_tokens=w["output_tokens"],
        gpus=DEMO_GPUS,
        slo_tpot_ms=w["slo_tpot_ms"],
        max_model_len=DEMO_MAX_MODEL_LEN,
        model_path=DEMO_MODEL_PATH,
        out=out / "plan.yaml",
    )
    b = result.best
    echo(
        f"  ISL {w['input_tokens']}, OSL {w['output_tokens']}, TPOT <= {w['slo_tpot_ms']:g} ms on {DEMO_GPUS} GPUs: "
        f"{result.trials} trials over {result.evaluations} of {result.space_size} setups; {result.feasible} feasible "
        "configurations of both kinds"
    )
    echo(
        f"  winner: {b.label()}: {b.output_tokens_per_usd:,.0f} "
        f"tokens/USD, TPOT {b.tpot_ms:.1f} ms, TTFT {b.ttft_ms:,.0f} ms ({b.basis} numbers)"
    )
    if result.decision:
        echo(f"  {result.decision.text}")
    for n in result.neighbours:
        echo(f"    {n.lost_on}")
    echo(f"  -> {result.plan} (study {result.study} in {result.storage}; optuna-dashboard opens it)")


def first_node_block(script: str) -> list[str]:
    """The `# ---- node 0` comment of an emitted script and the command lines under it."""
    lines = script.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# ---- node"))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def step_emit(out: Path, echo: Echo) -> None:
    script = out / "launch-vllm.sh"
    launch, text = api.emit_plan(out / "plan.yaml", "vllm", fmt="cli", out=script)
    echo(f"  {len(launch.processes)} vllm serve process(es) on {launch.nodes} node(s); node 0:")
    for line in first_node_block(text):
        echo("    " + line)
    echo(
        f"  -> {script} (every process; `tpplan emit {out / 'plan.yaml'} --engine sglang|megatron` for the others)"
    )


def step_report(out: Path, echo: Echo) -> None:
    """Figures and a Verdict of everything the steps above wrote (matplotlib, pandas)."""
    done = api.report(out, out=out / "report", formats=("md", "html"), csv=True, echo=echo)
    echo(f"  Verdict: {done.verdict[0]}")
    for line in done.missing:
        echo(f"  missing: {line}")
    shown = [p for p in done.files if p.endswith((".html", ".md", ".csv", ".parquet"))]
    echo(f"  -> {', '.join(shown)} (open report.html in a browser)")


STEPS: list[tuple[str, Callable[[Path, Echo], None]]] = [
    ("detect: this machine's topology as a hardware profile", step_detect),
    ("candidates: which layouts are legal and fit", step_candidates),
    ("sweep: real sharded forward passes on this machine, measured", step_sweep),
    ("estimate: TTFT, TPOT and tokens per dollar of the valid layouts", step_estimate),
    ("search: the most tokens per USD under a TPOT SLO (Optuna)", step_search),
    ("emit: the vLLM launch commands for the plan", step_emit),
    ("report: figures and a Verdict of this run", step_report),
]


def closing(out: Path, echo: Echo) -> None:
    """The answer last: the plan in one line, where the report is, and the command that launches it."""
    plan = io.load_plan(out / "plan.yaml")
    e = plan.estimate
    _, *command_lines = first_node_block((out / "launch-vllm.sh").read_text())
    first: list[str] = []  # the node's first command only: a node may start several replicas
    for line in command_lines:
        first.append(line)
        if not line.rstrip().endswith("\\"):
            break
    command = " ".join(line.strip().removesuffix("\\").strip() for line in first).removesuffix("&").strip()
    shape, gpus = plan.layout.label(), plan.layout.gpus
    if plan.prefill:  # disaggregated: prefill instances + decode instances (`layout`)
        shape, gpus = f"prefill {plan.prefill.label()} + decode {shape}", gpus + plan.prefill.gpus
    echo(f"\nPlan: {plan.model.name} as {shape} on {gpus} x {plan.profile.gpu.name} ({plan.profile.name})")
    if e is not None:
        slo = (
            f" (SLO {plan.workload.slo_tpot_ms:g} ms)" if plan.workload and plan.workload.slo_tpot_ms else ""
        )
        echo(
            f"  {e.output_tokens_per_usd:,.0f} output tokens/USD, TPOT {e.tpot_ms:.1f} ms{slo}; {e.basis} numbers"
        )
    echo(f"Report: {out / 'report' / 'report.html'}")
    count = plan.layout.replicas + (plan.prefill.replicas if plan.prefill else 0)
    echo(f"Launch (first of {count} instance(s); all in {out / 'launch-vllm.sh'}):")
    echo(f"  {command}")


def run(out: Path, echo: Echo = print) -> None:
    io.make_dir(out, "out")
    for i, (title, step) in enumerate(STEPS, 1):
        echo(f"\n[{i}/{len(STEPS)}] {title}")
        step(out, echo)
    closing(out, echo)
