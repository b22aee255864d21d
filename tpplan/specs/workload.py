"""Workload: what the deployment must serve, and the latency it must keep."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import Frozen
from .model import ModelSpec, resolve_kv_dtype

Tokens = Annotated[int, Field(ge=1, le=100_000_000)]
Millis = Annotated[float, Field(gt=0, le=3_600_000)]


class Workload(Frozen):
    """A closed-loop serving load, as `vllm bench serve --max-concurrency C` runs it."""

    input_tokens: Tokens = Field(description="prompt length per request (ISL)")
    output_tokens: Tokens = Field(description="generated tokens per request (OSL)")
    concurrency: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        1, description="requests in flight across the deployment"
    )
    dtype: Literal["bf16", "fp16", "fp8"] = Field("bf16", description="weight / compute dtype")
    kv_cache_dtype: Literal["auto", "bf16", "fp16", "fp8"] = Field(
        "auto",
        description="KV-cache dtype; auto means the compute dtype as in vLLM (bf16 for fp8 weights, not fp8)",
    )
    slo_ttft_ms: Millis | None = Field(None, description="limit on mean time to first token")
    slo_tpot_ms: Millis | None = Field(None, description="limit on mean time per output token")

    @property
    def kv_dtype(self) -> str:
        """The resolved KV dtype. A Workload does not know the checkpoint, so fp8 weights under auto
        get bf16; callers that know an fp16 checkpoint pass its KV dtype explicitly."""
        return resolve_kv_dtype(self.kv_cache_dtype, self.dtype)

    def kv_dtype_of(self, model: ModelSpec) -> str:
        """The KV dtype serving `model` with this workload's weights: `auto` as the engines resolve it
        for that checkpoint (its activation dtype, or the FP8 cache it declares)."""
        return resolve_kv_dtype(
            self.kv_cache_dtype, self.dtype, model.activation_dtype, model.checkpoint_kv_dtype
        )

    @property
    def sequence_tokens(self) -> int:
        return self.input_tokens + self.output_tokens
