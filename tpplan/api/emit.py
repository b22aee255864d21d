"""`tpplan emit`: a plan's launch commands for an engine, with the plan re-judged for that engine's memory."""

from __future__ import annotations

import os
from pathlib import Path

from .. import candidates as candidates_stage
from .. import emit as emit_stage
from .. import io
from ..errors import ConfigError
from ..records import Launch, Plan
from ..records.requests import EmitRequest, ServedAs
from ..specs import resolve_kv_dtype
from .refs import Ref


def emit_plan(
    plan: Plan | Ref,
    engine: str | None = None,
    *,
    fmt: str = "cli",
    out: Ref | None = None,
    replica_mode: str = "instances",
    port: int | None = None,
    node_addrs: tuple[str, ...] = (),
    checkpoint: str | None = None,
    model_path: str | None = None,
    hf_id: str | None = None,
    served_model: str | None = None,
) -> tuple[Launch, str]:
    """The launch commands for a plan (a Plan or a plan file) on `engine` (default: the plan's own),
    as shell text (`cli`) or a `--config` YAML file (`yaml`); written to `out` when given. `hf_id` /
    `model_path` replace what the engine loads; `served_model` is the name clients use.

    A plan is re-judged for the target engine's memory fit (candidates.judge): emitting it for an
    engine it was not planned for can change the memory fraction and the fit, which becomes a note."""
    req = io.validate_request(
        EmitRequest,
        {
            "engine": engine,
            "fmt": fmt,
            "replica_mode": replica_mode,
            "port": port,
            "node_addrs": tuple(node_addrs),
        },
    )
    served = io.validate_request(ServedAs, {"hf_id": hf_id, "served_model": served_model})
    plan = plan if isinstance(plan, Plan) else io.load_plan(plan)
    if served.hf_id:  # the repo to serve: what the engine loads unless --model-path names a dir
        model = plan.model.model_copy(update={"hf_id": served.hf_id})
        plan = plan.model_copy(update={"model": model, "model_path": model_path or served.hf_id})
    if model_path:
        plan = plan.model_copy(update={"model_path": model_path})
    if served.served_model:
        plan = plan.model_copy(update={"served_model_name": served.served_model})
    eng = req.engine or plan.engine
    if fmt == "yaml" and out is not None and Path(out).suffix not in (".yaml", ".yml"):
        raise ConfigError(
            "a --config file must end in .yaml or .yml (vLLM and SGLang read it by suffix)",
            file=str(out),
            field="out",
            request=True,
        )
    launch = emit_stage.emit(
        plan,
        eng,
        replica_mode=req.replica_mode,
        base_port=req.port,
        node_addrs=req.node_addrs,
        checkpoint=checkpoint,
    )  # type: ignore[arg-type]
    served = plan.model.model_copy(update={"dtype": plan.dtype})  # fp8 weights weigh half the spec's bf16
    kv = resolve_kv_dtype(
        plan.kv_cache_dtype, served.dtype, served.activation_dtype, served.checkpoint_kv_dtype
    )
    fit = candidates_stage.judge(
        served,
        plan.profile,
        layout=plan.layout,
        engine=eng,
        budget_gpus=plan.layout.gpus,
        max_model_len=plan.max_model_len,
        kv_dtype=kv,
    )
    if not fit.fits:
        why = "; ".join(str(r) for r in fit.reasons if r.kind in ("memory", "context"))
        launch = launch.model_copy(
            update={
                "notes": [*launch.notes, f"warning: may not fit under {eng}'s default memory fraction: {why}"]
            }
        )
    text = emit_stage.render(launch, fmt, config_path=str(out) if out is not None else "")
    if out is not None:
        io.write_text(Path(out), text)
        if fmt == "cli":
            os.chmod(out, 0o755)
    return launch, text
