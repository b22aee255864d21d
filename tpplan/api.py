"""The façade: loads and validates user input once, composes the stages, returns records.

The CLI is a thin shell over these functions; tests and scripts can call them directly.
Stages (topology, candidates, sweep, costmodel, search, emit) never import each other.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import candidates as candidates_stage
from . import emit as emit_stage
from . import io, topology
from .engines import ENGINES, Engine
from .errors import ConfigError, LayoutError
from .records import Candidate, Detection, Launch, Plan
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
    kv = plan.dtype if plan.kv_cache_dtype == "auto" else plan.kv_cache_dtype
    fit = candidates_stage.judge(
        plan.model, plan.profile, plan.layout, eng, plan.layout.gpus, plan.max_model_len, kv
    )
    if not fit.fits:
        why = "; ".join(r for r in fit.reasons if "GiB" in r or "KV cache" in r) or "; ".join(fit.reasons)
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
def detect(out: Path | None, nodes: int | None = None, price_usd_per_gpu_hour: float | None = None) -> Detection:
    """Read this machine (NVML + sysfs, or its CPUs when no GPU answers) and write its profile to `out`."""
    if out is not None and out.is_dir():
        raise ConfigError("is a directory", file=str(out), field="--out", expected="a file path such as profile.yaml")
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
