"""Layouts, candidates and plans: what the candidates, search and emit stages pass along."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, computed_field, model_validator

from ..specs.base import Frozen
from .reason import Reason

Degree = Annotated[int, Field(ge=1, le=100_000)]
TpFabric = Literal["none", "nvlink", "pcie", "network"]
# aggregated: every instance runs prefill and decode; disaggregated: prefill instances hand each prompt's
# KV cache to decode instances (vLLM's KV connectors, SGLang's --disaggregation-mode).
DeploymentKind = Literal["aggregated", "disaggregated"]


class Layout(Frozen):
    """A parallel layout: `replicas` independent engine instances of tp × pp GPUs each."""

    tp: Degree = Field(description="tensor-parallel degree (GPUs sharing each layer)")
    pp: Degree = Field(1, description="pipeline-parallel degree (stages of consecutive layers)")
    replicas: Degree = Field(1, description="independent instances (data parallelism)")
    # MoE / MLA layouts (1 and 1: plain TP, today's plans). Within one instance of tp GPUs per stage:
    ep: Degree = Field(
        1, description="expert-parallel degree: routed experts split whole over ep of the tp GPUs"
    )
    dp_attention: Degree = Field(
        1,
        description="attention data-parallel groups: attention runs at TP tp/dp_attention, each group on its own requests",
    )

    @model_validator(mode="after")
    def _moe_degrees_divide_tp(self) -> Layout:
        for name, value in (("ep", self.ep), ("dp_attention", self.dp_attention)):
            if self.tp % value:
                raise ValueError(
                    f"{name} ({value}) must divide tp ({self.tp}): it splits one instance's GPUs"
                )
        return self

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
                raise ValueError(
                    f"{key} ({given!r}) disagrees with {formula} ({expected}); drop it or fix it"
                )
        return data

    @computed_field  # in JSON output, so scripts need not multiply
    @property
    def world_size(self) -> int:
        return self.tp * self.pp

    @computed_field
    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.replicas

    @property
    def attention_tp(self) -> int:
        """TP degree of the attention layers (tp without DP attention)."""
        return self.tp // self.dp_attention

    def label(self) -> str:
        return f"TP{self.tp}×PP{self.pp}×R{self.replicas}{self.moe_label()}"

    def moe_label(self) -> str:
        """ " EP8 DPA8" style suffix, empty for a plain TP layout."""
        ep = f" EP{self.ep}" if self.ep > 1 else ""
        return ep + (f" DPA{self.dp_attention}" if self.dp_attention > 1 else "")


class Candidate(Layout):
    """One layout judged against an engine's rules, the memory and the topology."""

    engine: Literal["vllm", "megatron", "sglang"]
    engine_ok: bool = Field(description="the engine's own rules accept this layout")
    fits: bool = Field(description="weights + activations + a max_model_len KV cache fit the memory budget")
    valid: bool = Field(description="engine_ok and fits and placeable on the budget")
    reasons: list[Reason] = Field(description="why not valid, engine rules first (empty when valid)")
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
