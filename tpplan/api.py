"""The façade: loads and validates user input once, composes the stages, returns records.

The CLI is a thin shell over these functions; tests and scripts can call them directly.
Stages (topology, candidates, sweep, costmodel, search, emit) never import each other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from . import candidates as candidates_stage
from . import emit as emit_stage
from . import io, topology

# Re-exported: the CLI, the demo and the other halves call api.X. api_base and api_costmodel never
# import this module, so there is no cycle.
from .api_base import (  # noqa: F401
    Ref,
    check_budget,
    check_context,
    check_engine,
    list_profiles,
    load_model,
    load_profile,
)
from .api_costmodel import (  # noqa: F401
    calibrate,
    estimate_allreduce,
    estimate_serve,
    evaluate_serving,
    serve_estimate,
)
from .errors import ConfigError, LayoutError
from .records import (
    Candidate,
    Detection,
    Launch,
    Measurement,
    Plan,
)
from .specs import HardwareProfile, ModelSpec, resolve_kv_dtype

if TYPE_CHECKING:
    from .sweep.request import Request


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
    check_context(model, max_model_len)
    check_budget(gpus or profile.total_gpus)
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


def load_plan(ref: Ref) -> Plan:
    return io.load_plan(ref)


def emit_plan(
    plan: Plan | Ref,
    engine: str | None = None,
    fmt: str = "cli",
    out: Ref | None = None,
    replica_mode: str = "instances",
    port: int | None = None,
    node_addrs: tuple[str, ...] = (),
    checkpoint: str | None = None,
    model_path: str | None = None,
) -> tuple[Launch, str]:
    """The launch commands for a plan (a Plan or a plan file) on `engine` (default: the plan's own),
    as shell text (`cli`) or a `--config` YAML file (`yaml`); written to `out` when given.

    A plan is re-judged for the target engine's memory fit (candidates.judge): emitting it for an
    engine it was not planned for can change the memory fraction and the fit, which becomes a note."""
    plan = plan if isinstance(plan, Plan) else load_plan(plan)
    if model_path:
        plan = plan.model_copy(update={"model_path": model_path})
    eng = check_engine(engine or plan.engine)
    if replica_mode not in ("instances", "dp"):
        raise ConfigError(
            f"{replica_mode!r} is not a replica mode", field="--replicas", expected="instances or dp"
        )
    if any(not a for a in node_addrs):
        raise ConfigError(
            f"{','.join(node_addrs)!r} has an empty address",
            field="--node-addrs",
            expected="addresses of node 0, 1, ... separated by commas",
        )
    if fmt == "yaml" and out is not None and Path(out).suffix not in (".yaml", ".yml"):
        raise ConfigError(
            "a --config file must end in .yaml or .yml (vLLM and SGLang read it by suffix)",
            file=str(out),
            field="--out",
        )
    launch = emit_stage.emit(plan, eng, replica_mode, port, node_addrs, checkpoint)  # type: ignore[arg-type]
    served = plan.model.model_copy(update={"dtype": plan.dtype})  # fp8 weights weigh half the spec's bf16
    kv = resolve_kv_dtype(
        plan.kv_cache_dtype, served.dtype, served.activation_dtype, served.checkpoint_kv_dtype
    )
    fit = candidates_stage.judge(
        served, plan.profile, plan.layout, eng, plan.layout.gpus, plan.max_model_len, kv
    )
    if not fit.fits:
        why = "; ".join(str(r) for r in fit.reasons if r.kind in ("memory", "context"))
        launch = launch.model_copy(
            update={
                "notes": [*launch.notes, f"warning: may not fit under {eng}'s default memory fraction: {why}"]
            }
        )
    text = emit_stage.render(launch, fmt, str(out) if out is not None else "")
    if out is not None:
        io.write_text(Path(out), text)
        if fmt == "cli":
            os.chmod(out, 0o755)
    return launch, text


def detect(
    out: Path | None, nodes: int | None = None, price_usd_per_gpu_hour: float | None = None
) -> Detection:
    """Read this machine (NVML + sysfs, or its CPUs when no GPU answers) and write its profile to `out`."""
    if out is not None and out.is_dir():
        raise ConfigError(
            "is a directory", file=str(out), field="--out", expected="a file path such as profile.yaml"
        )
    found = topology.detect([p for _, p in io.bundled_profiles()], nodes, price_usd_per_gpu_hour)
    if out is not None:
        header = (
            f"# Written by `tpplan detect` on {found.profile.topology.host}. Every number says where it came\n"
            "# from (basis: measured here, derived, published in a bundled profile, or assumed).\n"
            f"# Use it: tpplan candidates MODEL --profile {out}"
        )
        try:
            io.write_text(out, io.to_yaml(found.profile, header, compact=True))
        except OSError as e:
            raise ConfigError(f"cannot be written ({e.strerror})", file=str(out), field="--out") from None
    return found


# ---- sweep ------------------------------------------------------------------------------------
def default_sweep_profile() -> str:
    """cpu-local on a machine without GPUs; with GPUs the user names their profile."""
    from .sweep.request import has_nvidia_gpu

    if has_nvidia_gpu():
        raise ConfigError(
            "this machine has NVIDIA GPUs; name their profile",
            field="--profile",
            expected="a profile (`tpplan detect --out gpus.yaml` writes one), or cpu-local for CPU ranks",
        )
    return "cpu-local"


def sweep(
    model_ref: Ref,
    profile_ref: Ref | None,
    request: Request,
    out: Path,
    resume: bool = False,
    host: str = "127.0.0.1",
    progress: bool = True,
) -> tuple[ModelSpec, list[Measurement], str]:
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
        found = runner.run_under_torchrun(
            settings, [c for c in cases if c.ranks == world], skipped, out, resume
        )
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
        raise ConfigError(
            f"{host!r} cannot be listened on here ({e.strerror})",
            field="--host",
            expected="an address of this machine, such as 127.0.0.1 (the default)",
        ) from None


def search(model_ref: Ref, profile_refs: list[Ref], input_tokens: int, output_tokens: int, **options):
    """`tpplan search`: the Optuna study over serving configurations and the winner's plan
    (-> (SearchResult, Plan)); see api_search.search for the options."""
    from . import api_search

    return api_search.search(
        str(model_ref), [str(p) for p in profile_refs], input_tokens, output_tokens, **options
    )


def report(
    run_dir: Ref,
    out: Ref | None = None,
    formats: tuple[str, ...] = ("md",),
    csv: bool = False,
    sweep_profile: str | None = None,
    echo=print,
):
    """`tpplan report`: a run directory's figures, tables and Verdict (-> Report); see api_report.report."""
    from . import api_report

    return api_report.report(run_dir, out, formats, csv, sweep_profile, echo)
