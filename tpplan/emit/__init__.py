"""emit: a Plan → the commands that launch it on vLLM, Megatron-LM or SGLang.

    launch = emit(plan, "vllm")                # a Launch record: processes, env, options, notes
    text = render(launch, "cli")               # a bash script; "yaml" gives a `--config` file

Every flag comes from the engine module's FLAGS (checked against the engine's own parser dump
in tests), every layout passes the engine's rules first (engines.check and the engine module's
own checks; a refusal is a LayoutError naming the rule), and every value is shell-quoted.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..records import Launch, Plan
from . import disagg, megatron, sglang, vllm
from .common import ReplicaMode, Target

EMITTERS = {"vllm": vllm, "megatron": megatron, "sglang": sglang}
FORMATS = ("cli", "yaml")


def emit(
    plan: Plan,
    engine: str,
    *,
    replica_mode: ReplicaMode = "instances",
    base_port: int | None = None,
    node_addrs: tuple[str, ...] = (),
    checkpoint: str | None = None,
) -> Launch:
    """The Launch for `plan` on `engine`; raises LayoutError when the engine refuses the plan.
    One replica needs no data parallelism, so `dp` then means the same as `instances`."""
    if plan.layout.replicas == 1:
        replica_mode = "instances"
    last_port = (base_port or 0) + plan.layout.replicas - 1
    if base_port is not None and not (base_port >= 1 and last_port <= 65535):
        raise ConfigError(
            f"{base_port} leaves ports {base_port}-{last_port} for {plan.layout.replicas} replica(s)",
            field="--port",
            expected="a first port such that every replica's port is in 1-65535",
        )
    target = Target(plan, engine, replica_mode, base_port, tuple(node_addrs), checkpoint)  # type: ignore[arg-type]
    launch = (disagg if plan.kind == "disaggregated" else EMITTERS[engine]).build(target)
    if target.model_path_notes():
        launch = launch.model_copy(update={"notes": [*target.model_path_notes(), *launch.notes]})
    return launch


def render(launch: Launch, fmt: str = "cli", *, config_path: str = "") -> str:
    """Shell text (`cli`) or a `--config` YAML file (`yaml`; vLLM and SGLang)."""
    if fmt not in FORMATS:
        raise ConfigError(f"{fmt!r} is not a format", field="--format", expected=" or ".join(FORMATS))
    return EMITTERS[launch.engine].render(
        launch, fmt, config_path=config_path or f"tpplan-{launch.engine}.yaml"
    )
