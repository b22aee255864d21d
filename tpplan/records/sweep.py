"""Sweep records: one measured layout per line of DIR/results.jsonl (`tpplan sweep`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ..specs.base import Frozen
from .layout import Layout

# Written by tpplan/sweep; read by the cost model's calibration and by reports. Times are wall
# clock measured on this machine (perf_counter on CPU, CUDA events on GPU) unless a field says so.

SweepStatus = Literal["ok", "timeout", "failed", "oom", "skipped"]
HeadsMode = Literal["even", "uneven", "padded"]
SweepDtype = Literal["fp32", "bf16", "fp16"]


class Stats(Frozen):
    """Summary of timed samples, as nccl-tests reports them (cv = standard deviation / mean)."""

    p50: float
    p99: float
    min: float
    max: float
    cv: float = Field(description="coefficient of variation: stdev / mean")
    n: int = Field(description="samples summarised")


class Latency(Frozen):
    p50: float
    p99: float


class AllReduceStats(Frozen):
    """The TP all-reduces of one step (after attention-out and MLP-down; one per layer for parallel blocks)."""

    bytes: int = Field(
        description="message size of one all-reduce (micro-batch tokens × hidden × dtype bytes)"
    )
    group_size: int = Field(description="ranks in each all-reduce (the TP degree)")
    count_per_step: int = Field(
        description="all-reduces one TP rank issues per step (all its layers and micro-batches)"
    )
    latency_us: Latency = Field(
        description="per call, the shortest time any rank of the group spent in it (the transfer, without waiting for stragglers)"
    )
    algbw_gbps: float = Field(description="bytes / latency p50")
    busbw_gbps: float = Field(description="algbw × 2(n−1)/n (nccl-tests doc/PERFORMANCE.md)")
    share_of_step: float = Field(description="count_per_step × latency p50 / step p50")


class RankTiming(Frozen):
    """One rank's median step, split into compute and waiting."""

    rank: int
    replica: int
    stage: int
    tp_rank: int
    heads: int = Field(description="query heads on this rank (zero heads included when padded)")
    kv_heads: int = Field(description="KV heads this rank stores (replicated when kv_heads < tp)")
    compute_ms: float = Field(description="step time outside collectives and point-to-point waits")
    wait_ms: float = Field(description="time inside all-reduces and point-to-point send/recv")
    allreduce_ms: float
    p2p_ms: float = Field(description="pipeline send/recv waits (includes the pipeline bubble)")
    busy_frac: float = Field(description="compute_ms / this rank's step time")
    cpu_ms: float | None = Field(
        None,
        description="CPU time of the rank's main thread per step, its compute without waits for a core (CPU only)",
    )
    gpu_util_pct: float | None = Field(None, description="mean NVML utilization while timed (GPU only)")

    def busy_ms(self, representative: bool) -> float:
        """This rank's busy time: its compute time, or, when ranks wait for a core (not
        `representative`), its CPU time, which waiting does not inflate. imbalance_pct is made of it."""
        return self.compute_ms if representative or self.cpu_ms is None else self.cpu_ms


class Drift(Frozen):
    """TP=N output against the TP=1 model with the same weights, input and dtype."""

    dtype: SweepDtype
    reference: str = Field(description="what the output was compared with")
    max_abs: float = Field(description="max |Δ| of the last-token logits")
    max_rel: float = Field(description="max |Δ| / max(|reference|, atol) of the last-token logits")
    hidden_max_abs: float = Field(description="max |Δ| of the final (normed) hidden states")
    allclose: bool = Field(description="torch.allclose(atol, rtol) holds for logits and hidden states")
    tolerance_ratio: float | None = Field(
        None,
        description="max |Δ| / (atol + rtol·|reference|) over the last-token logits and the final hidden "
        "states: allclose holds iff ≤ 1 (None on lines written before it was recorded, or when Δ is not finite)",
    )
    atol: float
    rtol: float
    advice: list[str] = Field(default_factory=list, description="remedies when allclose fails")


class Measurement(Layout):
    """One layout × dtype × heads form, measured (or why it could not be)."""

    key: str = Field(description="identity of this measurement; `--resume` skips keys already recorded")
    model: str
    dtype: SweepDtype
    tokens: int = Field(description="tokens per sequence in one forward pass (prefill)")
    batch: int = Field(description="sequences per forward pass")
    microbatches: int = Field(description="pipeline micro-batches per step (1 without PP)")
    heads_mode: HeadsMode
    status: SweepStatus
    reason: str = Field("", description="why status is not ok")
    backend: Literal["gloo", "nccl"]
    layers_measured: int = Field(description="real-width decoder layers that ran")
    layers_total: int = Field(description="decoder layers of the model; per-step figures are scaled by depth")
    step_ms: Stats | None = Field(
        None, description="measured step time of one instance (layers_measured layers)"
    )
    step_ms_full_depth: float | None = Field(None, description="step p50 × layers_total / layers_measured")
    allreduce: AllReduceStats | None = None
    ranks: list[RankTiming] = Field(default_factory=list)
    heads_per_rank: list[int] = Field(default_factory=list, description="query heads per TP rank")
    kv_heads_per_rank: list[int] = Field(default_factory=list)
    padding_heads: int = Field(0, description="zero heads added so heads divide by tp (padded form)")
    padding_cost_pct: float | None = Field(
        None,
        description="padded form: busy time summed over ranks vs the uneven form measured in the same sweep, +%",
    )
    engines_accepting: list[str] = Field(
        default_factory=list, description="engines whose rules accept this layout and heads form"
    )
    imbalance_pct: float | None = Field(
        None,
        description="max over TP groups of (slowest − fastest RankTiming.busy_ms) / slowest × 100",
    )
    busy_spread_ms: float | None = Field(
        None, description="slowest − fastest RankTiming.busy_ms in that TP group"
    )
    drift: Drift | None = None
    tokens_per_s: float | None = Field(None, description="all replicas together, scaled to full depth")
    tokens_per_s_alone: float | None = Field(None, description="one instance running alone (replicas > 1)")
    replica_scaling: float | None = Field(None, description="tokens_per_s / (replicas × tokens_per_s_alone)")
    ranks_per_core: float = Field(description="local ranks per CPU core (> 1 oversubscribes)")
    representative: bool = Field(
        description="false when ranks oversubscribe CPU cores: timings are then not representative"
    )
    warmup: int
    iters: int
    notes: list[str] = Field(default_factory=list)
    measured_at: str = Field("", description="UTC time the measurement finished (ISO 8601)")

    @model_validator(mode="before")
    @classmethod
    def _drop_computed(cls, data: Any) -> Any:
        """A results.jsonl line carries world_size/gpus (computed fields); reading it back drops them."""
        if isinstance(data, dict) and ("world_size" in data or "gpus" in data):
            data = {k: v for k, v in data.items() if k not in ("world_size", "gpus")}
        return data
