"""Records passed between pipeline stages (frozen pydantic models; derived values are properties)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, computed_field, model_validator

from .specs import HardwareProfile, ModelSpec, Workload
from .specs.base import Frozen

Degree = Annotated[int, Field(ge=1, le=100_000)]
TpFabric = Literal["none", "nvlink", "pcie", "network"]


class Layout(Frozen):
    """A parallel layout: `replicas` independent engine instances of tp × pp GPUs each."""

    tp: Degree = Field(description="tensor-parallel degree (GPUs sharing each layer)")
    pp: Degree = Field(1, description="pipeline-parallel degree (stages of consecutive layers)")
    replicas: Degree = Field(1, description="independent instances (data parallelism)")

    @model_validator(mode="before")
    @classmethod
    def _derived_fields_back(cls, data: Any) -> Any:
        """A dumped Layout carries its computed `world_size` and `gpus`; accept them back when they
        agree with tp, pp and replicas, so a plan or candidate file round-trips."""
        if not isinstance(data, dict) or not {"world_size", "gpus"} & data.keys():
            return data
        data = dict(data)
        tp, pp, replicas = data.get("tp"), data.get("pp", 1), data.get("replicas", 1)
        derived = {"world_size": ("tp × pp", (tp, pp)), "gpus": ("tp × pp × replicas", (tp, pp, replicas))}
        for key, (formula, factors) in derived.items():
            given = data.pop(key, None)
            if given is None or not all(type(f) is int for f in factors):
                continue  # a bad tp/pp/replicas is reported by their own validation
            expected = 1
            for f in factors:
                expected *= f
            if given != expected:
                raise ValueError(f"{key} ({given!r}) disagrees with {formula} ({expected}); drop it or fix it")
        return data

    @computed_field  # in JSON output, so scripts need not multiply
    @property
    def world_size(self) -> int:
        return self.tp * self.pp

    @computed_field
    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.replicas

    def label(self) -> str:
        return f"TP{self.tp}×PP{self.pp}×R{self.replicas}"


class Candidate(Layout):
    """One layout judged against an engine's rules, the memory and the topology."""

    engine: Literal["vllm", "megatron", "sglang"]
    engine_ok: bool = Field(description="the engine's own rules accept this layout")
    fits: bool = Field(description="weights + activations + a max_model_len KV cache fit the memory budget")
    valid: bool = Field(description="engine_ok and fits and placeable on the budget")
    reasons: list[str] = Field(description="why not valid (empty when valid)")
    notes: list[str] = Field(default_factory=list, description="warnings that do not make it invalid")
    heads_per_rank: list[int] = Field(description="query heads per TP rank as the engine places them")
    kv_heads_per_rank: list[int] = Field(description="KV heads stored per TP rank (replicated when kv < tp)")
    layers_per_stage: list[int] = Field(description="decoder layers per pipeline stage")
    weights_gib_per_gpu: float = Field(description="weights on the busiest GPU")
    activation_gib_per_gpu: float = Field(description="peak activations + runtime overhead reserved per GPU")
    memory_budget_gib_per_gpu: float = Field(description="device memory × the engine's memory fraction")
    kv_cache_gib_per_gpu: float = Field(description="memory left for the KV cache on the tightest GPU")
    kv_cache_tokens: int = Field(description="tokens of KV cache one instance holds")
    max_model_len: int = Field(description="context length the fit was checked for")
    crosses_nvlink_domain: bool = Field(description="some TP group spans more than one NVLink domain")
    crosses_node: bool = Field(description="some TP or PP group spans nodes")
    tp_fabric: TpFabric = Field(description="slowest link inside a TP group")
    nodes: int = Field(description="nodes the layout occupies")
    idle_gpus: int = Field(description="GPUs of the budget this layout leaves unused")


class Plan(Frozen):
    """What to launch, as `tpplan search` decides it and `tpplan emit` turns it into commands.

    Carries the model and profile themselves (not paths), so a plan file is self-contained.
    """

    model: ModelSpec
    model_path: str = Field("", description="what the engine loads (HF repo id or local dir); empty: model.name")
    profile: HardwareProfile
    engine: Literal["vllm", "megatron", "sglang"]
    layout: Layout
    max_num_seqs: Annotated[int, Field(ge=1, le=1_000_000)] = Field(description="concurrent sequences per replica")
    max_model_len: Annotated[int, Field(ge=1, le=100_000_000)] = Field(description="context length per sequence")
    dtype: Literal["bf16", "fp16", "fp8"] = Field("bf16", description="weight / compute dtype")
    kv_cache_dtype: Literal["auto", "bf16", "fp16", "fp8"] = Field("auto", description="KV-cache dtype")
    memory_fraction: Annotated[float, Field(gt=0, le=1)] | None = Field(
        None, description="engine memory fraction; None means the engine's default"
    )
    workload: Workload | None = Field(None, description="the load the plan was chosen for")


# ---- emit: the commands that launch a plan ---------------------------------------------------
EnvName = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")]


class EnvRef(Frozen):
    """A site value the plan cannot know (a node's address, a checkpoint directory). The launch
    text reads it from this environment variable, so the commands run as written once it is set."""

    env: EnvName
    meaning: str = Field(description="what to set the variable to")
    suffix: str = Field("", description="literal text after the value, e.g. ':20000'")


Word = str | EnvRef


class Option(Frozen):
    """One engine flag and its value; a switch has no value."""

    flag: Annotated[str, Field(pattern=r"^--[a-z0-9][a-z0-9-]*$")]
    value: int | float | str | EnvRef | None = None


class Process(Frozen):
    """One command to start on one node of the deployment (nodes numbered from 0)."""

    node: Annotated[int, Field(ge=0)]
    replicas: list[int] = Field(
        description="replica indices this process serves (several with data parallelism)"
    )
    role: Literal["server", "head", "worker"] = Field(
        description="server: a whole instance; head: node 0 of a multi-node instance (serves HTTP); worker: joins a head"
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


# ---- topology (tpplan detect) ---------------------------------------------------------------
class Detection(Frozen):
    """What `tpplan detect` found: the profile it writes, and whether a GPU answered at all."""

    profile: HardwareProfile
    gpu_found: bool = Field(description="NVML reported at least one GPU; False: a CPU (gloo) profile")
    fallback_reason: str | None = Field(None, description="why no GPU was read (nvmlInit error, no GPU)")
    warnings: list[str] = Field(default_factory=list, description="degraded links, unsourced numbers")
