"""Workload: what the deployment must serve, and the latency it must keep."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import Frozen

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
        "auto", description="KV-cache dtype; auto means the weight dtype"
    )
    slo_ttft_ms: Millis | None = Field(None, description="limit on mean time to first token")
    slo_tpot_ms: Millis | None = Field(None, description="limit on mean time per output token")

    @property
    def kv_dtype(self) -> str:
        return self.dtype if self.kv_cache_dtype == "auto" else self.kv_cache_dtype

    @property
    def sequence_tokens(self) -> int:
        return self.input_tokens + self.output_tokens
