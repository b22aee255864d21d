"""Search records (`tpplan search`): scored configurations, the plan it writes (what `tpplan emit`
reads), the winner's neighbours and the result."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ..specs import HardwareProfile, ModelSpec, Workload
from ..specs.base import Frozen
from .costmodel import with_point_interval
from .layout import DeploymentKind, Layout
from .provenance import Provenance
from .reason import Reason

Basis = Literal["measured", "fitted", "profile"]


class Disaggregated(Frozen):
    """The prefill side of a disaggregated configuration and what joins it to the decode side."""

    prefill: Layout = Field(description="the prefill instances: tp × pp each, `replicas` of them")
    kv_transfer_ms: float = Field(description="one prompt's KV cache from a prefill to a decode instance")
    kv_fabric: str = Field(
        description="the links it crosses: nvlink, pcie, network, or a mix by instance pair"
    )
    prefill_utilization: float = Field(description="busy fraction of the prefill instances")
    balanced_ratio: float = Field(description="prefill instances one full decode instance keeps busy")


def _same_kind(kind: str, prefill: Any, what: str) -> None:
    if (kind == "disaggregated") != (prefill is not None):
        raise ValueError(f"kind {kind!r} {'needs' if prefill is None else 'takes no'} {what}")


class ScoredConfig(Frozen):
    """One serving configuration as the search judged it (one Optuna trial's result)."""

    profile: str = Field(description="hardware profile (GPU type)")
    tp: int
    pp: int
    replicas: int
    ep: int = Field(1, description="expert-parallel ranks among the tp GPUs (MoE; 1: experts split by TP)")
    dp_attention: int = Field(1, description="data-parallel attention groups within the tp GPUs (1: none)")
    gpus: int = Field(description="tp × pp × replicas")
    concurrency: int = Field(description="client requests in flight across all replicas")
    max_num_seqs: int = Field(description="sequences each replica runs at once")
    dtype: str = Field(description="weight dtype")
    kv_cache_dtype: str
    output_tokens_per_s: float = Field(description="all replicas")
    output_tokens_per_usd: float = Field(description="the objective")
    ttft_ms: float
    tpot_ms: float
    output_tokens_per_usd_low: float = Field(description="80% interval of tokens/USD (the estimate's)")
    output_tokens_per_usd_high: float
    ttft_ms_low: float
    ttft_ms_high: float
    tpot_ms_low: float
    tpot_ms_high: float
    feasible: bool = Field(description="fits, the engine accepts it, and it meets the SLOs")
    violations: dict[str, float] = Field(
        description="constraint values as Optuna sees them (> 0: violated, by that fraction)"
    )
    reasons: list[Reason] = Field(description="why it is infeasible, in numbers (empty when feasible)")
    basis: Basis = Field(
        description="measured: TTFT/TPOT measured at this layout; fitted: cost model with fitted "
        "parameters; profile: cost model on the profile's published or assumed numbers"
    )
    trial: int | None = Field(None, description="the Optuna trial that evaluated it first")
    kind: DeploymentKind = Field(
        "aggregated", description="disaggregated: tp, pp, replicas and max_num_seqs are the decode side's"
    )
    disaggregated: Disaggregated | None = Field(None, description="the prefill side (disaggregated only)")

    @model_validator(mode="after")
    def _kind_matches(self) -> ScoredConfig:
        _same_kind(self.kind, self.disaggregated, "`disaggregated`")
        return self

    @model_validator(mode="before")
    @classmethod
    def _interval_of_old_records(cls, data: Any) -> Any:
        return with_point_interval(data)

    def label(self) -> str:
        kv = "" if self.kv_cache_dtype == self.dtype else f" (KV {self.kv_cache_dtype})"
        ep = f" EP={self.ep}" if self.ep > 1 else ""
        dpa = f" DPA={self.dp_attention}" if self.dp_attention > 1 else ""
        own = f"TP={self.tp}{ep}{dpa} PP={self.pp} x{self.replicas} seqs {self.max_num_seqs} {self.dtype}{kv}"
        if self.disaggregated is None:
            return own
        p = self.disaggregated.prefill
        return f"prefill TP={p.tp} PP={p.pp} x{p.replicas} + decode {own}"


class Plan(Frozen):
    """What to launch, as `tpplan search` decides it and `tpplan emit` turns it into commands.

    Carries the model and profile themselves (not paths), so a plan file is self-contained.
    """

    model: ModelSpec
    model_path: str = Field(
        "", description="what the engine loads (HF repo id or local dir); empty: model.name"
    )
    served_model_name: str = Field(
        "", description="the name clients ask for (vLLM/SGLang --served-model-name); empty: what is loaded"
    )
    profile: HardwareProfile
    engine: Literal["vllm", "megatron", "sglang"]
    layout: Layout = Field(description="the instances; with kind disaggregated, the decode instances")
    kind: DeploymentKind = Field("aggregated", description="aggregated, or disaggregated prefill/decode")
    prefill: Layout | None = Field(None, description="the prefill instances (kind disaggregated only)")
    max_num_seqs: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        description="concurrent sequences per replica (per decode instance when disaggregated)"
    )
    max_model_len: Annotated[int, Field(ge=1, le=100_000_000)] = Field(
        description="context length per sequence"
    )
    dtype: Literal["bf16", "fp16", "fp8"] = Field("bf16", description="weight / compute dtype")
    kv_cache_dtype: Literal["auto", "bf16", "fp16", "fp8"] = Field("auto", description="KV-cache dtype")
    memory_fraction: Annotated[float, Field(gt=0, le=1)] | None = Field(
        None, description="engine memory fraction; None means the engine's default"
    )
    workload: Workload | None = Field(None, description="the load the plan was chosen for")
    estimate: ScoredConfig | None = Field(
        None,
        description="what `tpplan search` expects of this plan, and whether it is measured, fitted or from a profile",
    )
    provenance: dict[str, Provenance] = Field(
        default_factory=dict, description="each number behind the estimate: value, basis and source"
    )
    why: list[str] = Field(
        default_factory=list,
        description="the winner against the best other layout (within the uncertainty or not), then what "
        "each neighbour lost on",
    )

    @model_validator(mode="after")
    def _kind_matches(self) -> Plan:
        _same_kind(self.kind, self.prefill, "`prefill` (the prefill instances' layout)")
        return self


class Decision(Frozen):
    """How the winner compares with the best runner-up of another layout or dtype (search/rank.py)."""

    runner_up: ScoredConfig | None = Field(description="None when no other layout is feasible")
    tokens_per_usd_ratio: float | None = Field(description="the winner's tokens/USD ÷ the runner-up's")
    within_uncertainty: bool = Field(
        description="the lower of the two tokens/USD lies inside the higher one's interval"
    )
    decided_by: Literal["tokens/USD", "TTFT", "TPOT", "GPUs", "only layout"] = Field(
        description="what put the winner first: more tokens/USD, or within the uncertainty lower TTFT, "
        "lower TPOT or fewer GPUs"
    )
    text: str = Field(description="one sentence, in numbers")


class Neighbour(Frozen):
    """A configuration one step from the winner, and what it lost on."""

    change: str = Field(description="TP*2, TP/2, replicas+1, replicas-1, PP+1; MoE: plain TP or EP+DPA")
    config: ScoredConfig | None = Field(description="None when it cannot exist within the budget")
    tokens_per_usd_ratio: float | None = Field(description="its output tokens/USD ÷ the winner's")
    lost_on: str = Field(description="one sentence, in numbers")


class SearchResult(Frozen):
    """`tpplan search`: the winner, the runners-up, the Pareto front, and how the search went."""

    model: str
    engine: str
    best: ScoredConfig
    top: list[ScoredConfig] = Field(description="the best feasible configurations, best first")
    pareto: list[ScoredConfig] = Field(
        description="feasible configurations no other beats on tokens/USD, TPOT and TTFT at once"
    )
    decision: Decision | None = Field(None, description="the winner against the best other layout")
    best_per_profile: list[ScoredConfig] = Field(
        default_factory=list, description="with several profiles: the winner on each GPU type, best first"
    )
    neighbours: list[Neighbour]
    trials: int = Field(description="finished trials in the study (repeats of a configuration included)")
    evaluations: int = Field(description="distinct setups evaluated, each at its solved max_num_seqs")
    repeats: int = Field(
        description="trials that drew an already evaluated configuration (answered from the cache)"
    )
    feasible: int = Field(
        description="distinct feasible configurations found (the study's, its neighbours' and the disaggregated deployments)"
    )
    space_size: int = Field(description="distinct setups (all but max_num_seqs) in the search space")
    study: str
    storage: str
    plan: str = Field(description="where the plan was written")
    basis_line: str = Field(
        default="",
        description="which inputs of the winner's numbers were measured, fitted, published, assumed",
    )
    notes: list[str] = Field(default_factory=list)
