"""Efficiency: how much of a profile's peak numbers real kernels, collectives and engines achieve.

An optional `efficiency:` section of a hardware profile. Without it (or without one of its fields) the
cost model uses the documented priors in `tpplan/costmodel/params.py`. `tpplan calibrate` and
`scripts/fit_defaults.py` write it; every fitted number says `basis: fitted` and what it was fitted from.

Only physical parameters live here — achieved fractions of peak FLOP/s and memory bandwidth, fixed
per-step and per-layer costs, collective latency and bandwidth curves — never per-model fudge factors:
the same numbers must carry to models, batch sizes and layouts the fit never saw.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .base import Basis, Frozen, Name, bounded

Fraction = bounded(0, 1, "fraction of peak")
Share = bounded(0, 1, "fraction", lo_open=False)
Millis = bounded(0, 100_000, "ms", lo_open=False)
Micros = bounded(0, 1_000_000, "us", lo_open=False)

# The link a collective runs over, as candidates.place() names it.
Fabric = Literal["nvlink", "pcie", "network"]
# `backend`: the profile's collective library (NCCL on GPUs, gloo on CPU ranks), as nccl-tests or a
# tpplan sweep measures it. `custom`: an engine's own all-reduce kernel for small messages (vLLM/SGLang
# custom all-reduce, TensorRT-LLM's AllReduce), which serving decode steps use inside an NVLink domain.
Implementation = Literal["backend", "custom"]


class AllReduceCurve(Frozen):
    """All-reduce time over `ranks` ranks of a message of S bytes, nccl-tests' busbw convention:

    t(S) = alpha_us + S·2(n−1)/n ÷ busbw(S),   busbw(S) = peak_busbw_gbps / (1 + (half_bytes / S)^shape)

    alpha is the latency floor; busbw saturates towards its peak as messages grow (protocol and
    channel ramp-up: the 8x A100 table reaches only 138 GB/s at 32 MiB of a ~235 GB/s peak).
    """

    ranks: Annotated[int, Field(ge=2, le=100_000)] = Field(description="ranks in the all-reduce")
    alpha_us: Annotated[float, Field(ge=0, le=1_000_000)] = Field(
        description="latency floor of one all-reduce"
    )
    peak_busbw_gbps: Annotated[float, Field(gt=0, le=1_000_000)] = Field(
        description="busbw approached by large messages"
    )
    half_bytes: Annotated[float, Field(gt=0, le=1e15)] = Field(
        description="message size at which busbw is half its peak (shape 1)"
    )
    shape: Annotated[float, Field(gt=0, le=4)] = Field(description="steepness of the busbw ramp")
    points: Annotated[int, Field(ge=0)] = Field(
        0, description="measurements the curve was fitted to (0: a prior)"
    )
    median_error_pct: Annotated[float, Field(ge=0)] | None = Field(
        None, description="median |error| of the curve against those measurements"
    )


class AllReduceFit(Frozen):
    """All-reduce curves for one fabric and implementation, one curve per rank count measured."""

    fabric: Fabric = Field(
        description="nvlink | pcie | network (as `tpplan candidates` names a TP group's link)"
    )
    implementation: Implementation = Field(
        description="backend (NCCL/gloo) | custom (an engine's own kernel)"
    )
    curves: tuple[AllReduceCurve, ...] = Field(min_length=1, strict=False, description="by rank count")
    source: str = Field(min_length=1, description="what the curves were fitted from")
    basis: Basis = Field("fitted", description="published | measured | fitted | derived | assumed")

    @model_validator(mode="after")
    def _one_curve_per_rank_count(self) -> AllReduceFit:
        ranks = [c.ranks for c in self.curves]
        if len(set(ranks)) != len(ranks):
            raise ValueError(f"curves repeat a rank count: {sorted(ranks)}")
        return self


class EngineOverhead(Frozen):
    """Costs of an engine's software on this hardware that do not scale with FLOPs or bytes."""

    engine: Name = Field(description="vllm | sglang | megatron | trtllm | tpplan-sweep")
    step_ms: Millis = Field(description="fixed cost of every forward step: scheduling, sampling, launches")
    per_layer_us: Micros = Field(description="per-layer cost of every step: kernel floors of small kernels")
    per_seq_us: Micros = Field(
        description="per-sequence cost of every step: scheduling, sampling, detokenizing"
    )
    request_ms: Millis = Field(
        description="per-request latency outside the GPU (HTTP, tokenizing) added to TTFT"
    )
    cohort_fraction: Share = Field(
        description="how bunched closed-loop arrivals are (κ): requests arrive in cohorts of 1 + κ·(n − 1)^0.7 "
        "of the n resident requests (requests that finish together come back together)"
    )


Ratio = Annotated[float, Field(gt=0, le=1000)]


class ServingSpread(Frozen):
    """How far measured serving numbers fell from the cost model's, for one engine: the 10th and 90th
    percentiles of measured ÷ predicted TPOT and TTFT. An estimate's interval is its value times these
    (an 80% interval, if the points it was judged on are like the question asked)."""

    engine: Name = Field(description="the engine the points ran on; `*`: pooled over engines")
    tpot_ratio_p10: Ratio = Field(description="10th percentile of measured / predicted TPOT")
    tpot_ratio_p90: Ratio = Field(description="90th percentile of measured / predicted TPOT")
    ttft_ratio_p10: Ratio = Field(description="10th percentile of measured / predicted TTFT")
    ttft_ratio_p90: Ratio = Field(description="90th percentile of measured / predicted TTFT")
    points: Annotated[int, Field(ge=1)] = Field(description="measurements the ratios were taken over")
    held_apart: bool = Field(
        description="True: judged on points the fit did not see (a split); False: on the fitted points "
        "themselves, which understates the error"
    )
    source: str = Field(min_length=1, description="what was fitted and judged")
    basis: Basis = Field("fitted", description="fitted: from this profile's own calibration")

    def describe(self) -> str:
        over = "held-apart points" if self.held_apart else "fitted points (understates the error)"
        return (
            f"measured/predicted TPOT {self.tpot_ratio_p10:g}-{self.tpot_ratio_p90:g}, "
            f"TTFT {self.ttft_ratio_p10:g}-{self.ttft_ratio_p90:g} over {self.points} {over}"
        )

    @model_validator(mode="after")
    def _ordered(self) -> ServingSpread:
        for what, lo, hi in (
            ("tpot", self.tpot_ratio_p10, self.tpot_ratio_p90),
            ("ttft", self.ttft_ratio_p10, self.ttft_ratio_p90),
        ):
            if lo > hi:
                raise ValueError(f"{what}_ratio_p10 ({lo:g}) is above {what}_ratio_p90 ({hi:g})")
        return self


class Efficiency(Frozen):
    """Achieved fractions and overheads; each absent field falls back to a documented prior."""

    gemm_fraction: Fraction | None = Field(
        None, description="achieved fraction of the dense peak FLOP/s on large matrix products (prefill)"
    )
    hbm_fraction: Fraction | None = Field(
        None,
        description="achieved fraction of peak device-memory bandwidth when streaming weights and KV cache",
    )
    overheads: tuple[EngineOverhead, ...] = Field((), strict=False, description="per-engine software costs")
    allreduce: tuple[AllReduceFit, ...] = Field((), strict=False, description="all-reduce curves per fabric")
    p2p_alpha_us: Micros | None = Field(None, description="latency of one pipeline-stage send/recv")
    serving_spread: tuple[ServingSpread, ...] = Field(
        (), strict=False, description="per engine: how far measured TPOT/TTFT fell from the fitted model's"
    )

    @model_validator(mode="after")
    def _unique_keys(self) -> Efficiency:
        engines = [o.engine for o in self.overheads]
        if len(set(engines)) != len(engines):
            raise ValueError(f"overheads repeat an engine: {engines}")
        spread = [s.engine for s in self.serving_spread]
        if len(set(spread)) != len(spread):
            raise ValueError(f"serving_spread repeats an engine: {spread}")
        keys = [(a.fabric, a.implementation) for a in self.allreduce]
        if len(set(keys)) != len(keys):
            raise ValueError(f"allreduce repeats a (fabric, implementation): {keys}")
        return self

    def overhead(self, engine: str) -> EngineOverhead | None:
        return next((o for o in self.overheads if o.engine == engine), None)

    def spread(self, engine: str) -> ServingSpread | None:
        return next((s for s in self.serving_spread if s.engine == engine), None)

    def allreduce_fit(self, fabric: str, implementation: str) -> AllReduceFit | None:
        return next(
            (a for a in self.allreduce if (a.fabric, a.implementation) == (fabric, implementation)), None
        )
