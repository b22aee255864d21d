"""Launch records: the commands `tpplan emit` writes for a plan."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ..specs.base import Frozen

EnvName = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")]


class EnvRef(Frozen):
    """A site value the plan cannot know (a node's address, a checkpoint directory). The launch
    text reads it from this environment variable, so the commands run as written once it is set."""

    env: EnvName
    meaning: str = Field(description="what to set the variable to")
    suffix: str = Field("", description="literal text after the value, e.g. ':20000'")
    prefix: str = Field("", description="literal text before the value, e.g. 'http://'")


Word = str | EnvRef


class Option(Frozen):
    """One engine flag and its value; a switch has no value."""

    flag: Annotated[str, Field(pattern=r"^--[a-z0-9][a-z0-9-]*$")]
    value: int | float | str | EnvRef | None = None


class Process(Frozen):
    """One command to start on one node of the deployment (nodes numbered from 0)."""

    node: Annotated[int, Field(ge=0)]
    replicas: list[int] = Field(
        description="replica indices this process serves (several with data parallelism; none for a router)"
    )
    role: Literal["server", "head", "worker", "router"] = Field(
        description="server: a whole instance; head: node 0 of a multi-node instance (serves HTTP); worker: joins "
        "a head; router: the front of a disaggregated deployment (no GPUs)"
    )
    phase: Literal["prefill", "decode"] | None = Field(
        None, description="the instance's side of a disaggregated deployment (None: it runs both)"
    )
    port: int | None = Field(description="HTTP port it serves on; None for workers")
    gpus: list[int] = Field(description="local CUDA device indices (CUDA_VISIBLE_DEVICES)")
    env: dict[str, Word] = Field(description="environment assignments placed before the command")
    command: list[Word] = Field(
        description="program words before the engine's options (launcher flags included)"
    )
    options: list[Option]


class Launch(Frozen):
    """Everything needed to start a plan on one engine."""

    engine: Literal["vllm", "megatron", "sglang"]
    title: str = Field(description="one line: model, hardware, engine, layout")
    nodes: Annotated[int, Field(ge=1)]
    processes: list[Process]
    notes: list[str] = Field(description="what the commands assume and why a flag is (or is not) there")

    @property
    def site_values(self) -> list[EnvRef]:
        """Environment variables the commands read, each once, in order of first use."""
        found: dict[str, EnvRef] = {}
        for p in self.processes:
            words = [*p.env.values(), *p.command, *(o.value for o in p.options)]
            for w in words:
                if isinstance(w, EnvRef):
                    found.setdefault(w.env, w)
        return list(found.values())
