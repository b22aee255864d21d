"""Engine bench records (`tpplan bench`): one line of DIR/bench.jsonl per (layout, concurrency).

Measured numbers come from the engine's own benchmark client (`vllm bench serve`,
`python -m sglang.bench_serving`); `predicted` is tpplan's estimate of the same point, kept beside
them so every line says how far the cost model was off. A fault (the engine would not start,
refused a flag, hung, died) is a line too, with its reason and the log's last lines.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ..specs.base import Frozen

BENCH_KIND = "tpplan-bench"  # marks a bench.jsonl line (calibrate tells it from a sweep's results.jsonl)
BenchStatus = Literal["ok", "failed_to_start", "rejected", "port_in_use", "timeout", "died", "client_failed"]
Positive = Annotated[float, Field(ge=0)]


class BenchMetrics(Frozen):
    """What the engine's client measured at one concurrency (milliseconds, tokens per second)."""

    ttft_ms_mean: Positive
    ttft_ms_p50: Positive
    ttft_ms_p99: Positive
    tpot_ms_mean: Positive
    tpot_ms_p50: Positive
    tpot_ms_p99: Positive
    itl_ms_p50: Positive
    itl_ms_p99: Positive
    output_tokens_per_s: Positive
    output_tokens_per_usd: Positive = Field(description="output tokens/s x 3600 / the layout's USD per hour")
    completed: int = Field(description="requests that finished")
    failed: int = Field(0, description="requests the client counted as failed")


class BenchPredicted(Frozen):
    """tpplan's estimate of the same point (cost model on the plan's profile)."""

    ttft_ms: Positive
    tpot_ms: Positive
    output_tokens_per_s: Positive
    output_tokens_per_usd: Positive
    basis: str = Field(description="profile or fitted: what the estimate's parameters are")


class BenchRecord(Frozen):
    """One (layout, concurrency) point: measured, predicted, or the fault that stopped it."""

    kind: Literal["tpplan-bench"] = BENCH_KIND
    engine: Literal["vllm", "sglang"]
    engine_version: str
    device: Literal["cpu", "gpu"] = Field(description="what the engine ran on")
    profile: str = Field(description="the hardware profile the estimate was made on")
    model: str = Field(description="model name (the spec's)")
    model_spec: str = Field(description="model spec file, relative to the bench dir (calibrate loads it)")
    tp: int
    pp: int
    replicas: int
    dtype: str
    max_num_seqs: int = Field(description="the server's --max-num-seqs (the plan's): C above it queues")
    isl: int
    osl: int
    concurrency: int
    num_prompts: int
    status: BenchStatus
    reason: str = ""
    log_tail: str = Field("", description="last lines of the server's log (faults only)")
    command: str = Field(description="the server command as run: added environment, then the emitted text")
    client_command: str = ""
    startup_s: float | None = Field(None, description="launch to /health answering")
    measured: BenchMetrics | None = None
    predicted: BenchPredicted | None = None
    ratio: dict[str, float] = Field(
        default_factory=dict, description="predicted / measured of ttft, tpot, output_tokens_per_s"
    )
    finished_at: str = Field(description="UTC time the line was written")

    @property
    def key(self) -> tuple:
        """What --resume matches on: a point already written is not run again."""
        return (self.engine, self.tp, self.pp, self.replicas, self.isl, self.osl, self.concurrency)

    @property
    def label(self) -> str:
        return f"TP={self.tp} PP={self.pp} x{self.replicas} C={self.concurrency}"
