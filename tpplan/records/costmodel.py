"""Detection and cost-model records (`tpplan detect`, `tpplan estimate`, `tpplan calibrate`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, computed_field, model_validator

from ..specs import HardwareProfile, ServingSpread
from ..specs.base import Frozen
from .layout import Layout, TpFabric
from .provenance import Provenance
from .reason import Reason


class Detection(Frozen):
    """What `tpplan detect` found: the profile it writes, and whether a GPU answered at all."""

    profile: HardwareProfile
    gpu_found: bool = Field(description="NVML reported at least one GPU; False: a CPU (gloo) profile")
    fallback_reason: str | None = Field(None, description="why no GPU was read (nvmlInit error, no GPU)")
    gpus_present: list[str] = Field(
        default_factory=list, description="signs of NVIDIA GPUs NVML could not read (/dev/nvidia0, PCI 10de)"
    )
    warnings: list[str] = Field(default_factory=list, description="degraded links, unsourced numbers")

    def fallback_line(self) -> str:
        """One line on why the GPUs were not profiled: the demo and `detect` say the same thing."""
        if self.gpus_present:  # the GPUs are there; what failed is reading them
            what = f"NVIDIA GPUs present ({', '.join(self.gpus_present)}) but NVML cannot read them"
        else:
            what = "no NVIDIA GPU found"
        return f"{what}: {self.fallback_reason}"


class AllReduceEstimate(Frozen):
    """One all-reduce as the cost model prices it, in nccl-tests' terms."""

    bytes: int = Field(description="message size S")
    ranks: int = Field(description="ranks n in the all-reduce")
    fabric: TpFabric = Field(
        description="slowest link in the group: nvlink | pcie | network (none for 1 rank)"
    )
    implementation: str = Field(description="backend (NCCL/gloo) or custom (an engine's own kernel)")
    algorithm: str = Field(
        "curve",
        description="what was priced: curve (the fitted per-rank-count curve), custom, or across nodes "
        "NCCL's algorithm/protocol (ring, tree, nvls_tree, collnet / LL, LL128, Simple)",
    )
    latency_us: float = Field(description="t = alpha + S·2(n−1)/n ÷ busbw(S)")
    algbw_gbps: float = Field(description="S / t")
    busbw_gbps: float = Field(description="algbw · 2(n−1)/n")
    provenance: list[Provenance] = Field(
        description="where each number came from: fitted curve, prior, profile"
    )


class StepBreakdown(Frozen):
    """Where the milliseconds of a mean serving step go (one output token for every running sequence)."""

    compute_ms: float = Field(description="ops bound by FLOPs (prefill chunks, large batches)")
    weight_reads_ms: float = Field(description="ops bound by reading the weights")
    kv_reads_ms: float = Field(description="attention bound by reading the KV cache")
    allreduce_ms: float = Field(description="TP all-reduces")
    p2p_ms: float = Field(description="pipeline-stage sends")
    overhead_ms: float = Field(description="per-step, per-layer and per-sequence software costs")
    bubble_ms: float = Field(description="pipeline stages waiting on the slowest")
    allreduce_count: int = Field(description="all-reduces per step on the busiest stage path")
    allreduce_bytes: float = Field(description="bytes of each all-reduce")
    allreduce_us_each: float = Field(description="time of each all-reduce")
    allreduce_implementation: str = Field(description="backend | custom | none")

    @model_validator(mode="before")
    @classmethod
    def _drop_total(cls, data: Any) -> Any:
        """A dumped breakdown carries its computed total_ms (estimates.json); reading it back drops it."""
        if isinstance(data, dict) and "total_ms" in data:
            data = {k: v for k, v in data.items() if k != "total_ms"}
        return data

    @computed_field
    @property
    def total_ms(self) -> float:
        return (
            self.compute_ms
            + self.weight_reads_ms
            + self.kv_reads_ms
            + self.allreduce_ms
            + self.p2p_ms
            + self.overhead_ms
            + self.bubble_ms
        )


class ServeEstimate(Frozen):
    """Serving at a closed-loop concurrency, as `vllm bench serve --max-concurrency C` reports it."""

    model: str
    profile: str
    engine: str
    layout: Layout
    input_tokens: int
    output_tokens: int
    concurrency: int = Field(description="requests in flight across all replicas")
    dtype: str
    kv_cache_dtype: str
    ttft_ms: float = Field(description="mean time to first token")
    tpot_ms: float = Field(description="mean time per output token after the first")
    output_tokens_per_s: float = Field(description="all replicas")
    requests_per_s: float = Field(description="all replicas")
    output_tokens_per_s_per_instance: float
    requests_per_s_per_instance: float
    gpus: int
    usd_per_hour: float
    output_tokens_per_usd: float
    ttft_ms_low: float = Field(description="80% interval of the TTFT, low end (provenance: uncertainty)")
    ttft_ms_high: float = Field(description="80% interval of the TTFT, high end")
    tpot_ms_low: float = Field(description="80% interval of the TPOT, low end")
    tpot_ms_high: float = Field(description="80% interval of the TPOT, high end")
    output_tokens_per_usd_low: float = Field(
        description="tokens/USD at the interval's slow end (TTFT and TPOT high), by Little's law"
    )
    output_tokens_per_usd_high: float = Field(description="tokens/USD at the interval's fast end")
    fits: bool = Field(
        description="memory: weights, activations and one I+O sequence fit (and the placement holds it)"
    )
    reasons: list[Reason] = Field(
        description="why it cannot run: engine, memory, context, placement (empty when it can)"
    )
    engine_ok: bool = Field(True, description="the engine's own rules accept the layout")
    runnable: bool = Field(
        True,
        description="engine_ok and fits: False means the serving numbers below are what the model computes "
        "for a deployment that cannot start, not achievable figures",
    )
    ttft_note: str = Field("", description="how far the cost model's TTFT is off where it was measured")
    kv_cache_tokens: int = Field(description="KV-cache capacity of one instance, tokens")
    max_concurrency: int = Field(
        description="requests of I+O tokens the KV caches of all replicas hold at once"
    )
    max_num_seqs: int = Field(description="the engine's sequence cap per instance")
    resident_per_instance: float = Field(description="requests inside one engine (the rest wait)")
    decode_batch: float = Field(description="mean sequences decoding per step")
    prefill_tokens_per_step: float = Field(description="mean prompt tokens per step (others' prefills)")
    queue_wait_ms: float = Field(description="mean wait for a sequence slot or KV space")
    tp_fabric: TpFabric
    crosses_nvlink_domain: bool
    nodes: int
    breakdown: StepBreakdown = Field(description="the mean step, whose total is the TPOT")
    provenance: dict[str, Provenance] = Field(description="each input number: value, basis and source")
    converged: bool = Field(description="the steady-state equations converged")

    @model_validator(mode="before")
    @classmethod
    def _runnable_of_old_records(cls, data: Any) -> Any:
        """Records written before `runnable` existed meant by `fits` that it could run at all; a dumped
        estimate carries its computed engine_reasons, which reading it back drops."""
        if isinstance(data, dict) and "runnable" not in data and "fits" in data:
            data = {**data, "runnable": data["fits"]}
        if isinstance(data, dict) and "engine_reasons" in data:
            data = {k: v for k, v in data.items() if k != "engine_reasons"}
        return with_point_interval(data)

    @computed_field  # in JSON output, so scripts need not filter
    @property
    def engine_reasons(self) -> list[Reason]:
        """Why the engine refuses the layout (the reasons of kind engine)."""
        return [r for r in self.reasons if r.kind == "engine"]


INTERVAL_OF = {
    "ttft_ms": ("ttft_ms_low", "ttft_ms_high"),
    "tpot_ms": ("tpot_ms_low", "tpot_ms_high"),
    "output_tokens_per_usd": ("output_tokens_per_usd_low", "output_tokens_per_usd_high"),
}


def with_point_interval(data: Any) -> Any:
    """Records written before estimates carried intervals read back with a zero-width one (the value)."""
    if isinstance(data, dict) and "ttft_ms_low" not in data:
        data = {**data, **{end: data[k] for k, ends in INTERVAL_OF.items() if k in data for end in ends}}
    return data


class ErrorStats(Frozen):
    metric: str = Field(description="what was compared: tpot, ttft, step, allreduce")
    points: int
    median_abs_pct: float = Field(description="median |predicted − measured| / measured, %")
    p90_abs_pct: float = Field(description="90th percentile of the same, %")
    exact: bool = Field(
        False,
        description="no more points than fitted parameters: the fit goes through them, so the error "
        "says nothing about accuracy (no held-out check)",
    )


class SourceFit(Frozen):
    """What one calibration source contributed, and how well the fitted model then reproduces it."""

    source: str = Field(description="the file as given")
    kind: Literal["sweep", "nccl-tests", "serving"]
    points: int = Field(description="measurements used")
    skipped: list[str] = Field(description="measurements not used, and why")
    fitted: list[str] = Field(description="parameters fitted from it")
    errors: list[ErrorStats] = Field(description="fit error of the calibrated model on this source")
    spread: list[ServingSpread] = Field(
        default_factory=list,
        description="serving points: per engine, measured/predicted percentiles every estimate's interval uses",
    )


class Calibration(Frozen):
    """`tpplan calibrate`: the profile written and the fit per source."""

    profile: str = Field(description="name of the calibrated profile")
    out: str = Field(description="where the calibrated profile was written ('' when not written)")
    sources: list[SourceFit]
    parameters: dict[str, Provenance] = Field(description="every fitted parameter: value, basis and source")
