"""What a sweep will run: its cases (layout × dtype × heads form), shared settings and layer sample.

Pure Python (no torch): the CLI validates flags against it before any process starts, and the
runner hands the resulting `SweepJob` to every rank as JSON.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import Field

from .. import engines
from ..records import HeadsMode, SweepDtype
from ..specs import ModelSpec
from ..specs.base import Frozen

DTYPES: tuple[SweepDtype, ...] = ("fp32", "bf16", "fp16")
HEADS_FORMS: tuple[HeadsMode, ...] = ("uneven", "padded")
# Engines' rules for heads that do not divide by tp, with the source lines (reference/engines/README.md).
UNEVEN_REFUSED = (
    "vLLM, SGLang and Megatron-LM all require num_attention_heads % tp == 0 (vllm/config/model.py:1556-1563, "
    "sglang/srt/models/llama.py:183, megatron/core/transformer/transformer_config.py:1446-1450)"
)
PADDED_REFUSED = (
    "no engine pads decoder attention heads (vLLM pads dummy heads only in ViT encoders: "
    "vllm/model_executor/models/intern_vit.py:125-161)"
)


class SweepSettings(Frozen):
    """What every case of a sweep shares; every rank gets the same copy."""

    model: ModelSpec
    backend: Literal["gloo", "nccl"]
    tokens: Annotated[int, Field(ge=1)] = Field(description="tokens per sequence (prefill)")
    batch: Annotated[int, Field(ge=1)] = Field(description="sequences per forward pass")
    layers: Annotated[int, Field(ge=1)] = Field(
        description="real-width layers that run (split over PP stages)"
    )
    warmup: Annotated[int, Field(ge=0)]
    iters: Annotated[int, Field(ge=1)]
    timeout_s: Annotated[float, Field(gt=0)] = Field(description="timeout of every collective")
    atol: Annotated[float, Field(ge=0)] | None = Field(None, description="None: the case dtype's tolerance")
    rtol: Annotated[float, Field(ge=0)] | None = None

    def tolerance(self, dtype: str) -> tuple[float, float]:
        """(atol, rtol) of the drift check: the flags when given, else the dtype's (DRIFT_TOLERANCE)."""
        default = DRIFT_TOLERANCE[dtype]
        return (default if self.atol is None else self.atol, default if self.rtol is None else self.rtol)

    seed: int = 0


# A TP=N forward sums its partial results in another order than TP=1, so each element may differ by
# a few roundings of the dtype; 8 units of its machine epsilon (bf16 2^-7, fp16 2^-10) is that, where a
# real sharding bug is off by O(1). fp32's 8 x 2^-23 is below what the reordered sums of a 4k-wide
# layer reach; 1e-5 is torch.testing's fp32 atol. One value serves as atol and rtol.
DRIFT_TOLERANCE = {"bf16": 8 * 2.0**-7, "fp16": 8 * 2.0**-10, "fp32": 1e-5}


class Case(Frozen):
    """One thing to measure: a layout in a dtype with a heads form."""

    key: str
    tp: int
    pp: int
    replicas: int
    dtype: SweepDtype
    heads_mode: HeadsMode
    engines_accepting: list[str]

    @property
    def ranks(self) -> int:
        return self.tp * self.pp * self.replicas


class SweepJob(Frozen):
    """The cases one process group runs, in order, and their settings."""

    settings: SweepSettings
    cases: list[Case]


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def case_key(
    model: ModelSpec, s: SweepSettings, *, tp: int, pp: int, replicas: int, dtype: str, heads: str
) -> str:
    """Identity of a measurement: what `--resume` matches (changing --tokens/--batch/--layers measures anew)."""
    return f"{model.name}/tp{tp}-pp{pp}-r{replicas}/{dtype}/{heads}/t{s.tokens}x{s.batch}/L{s.layers}"


def ffn_width(model: ModelSpec) -> int:
    """FFN width the sweep runs: the dense width, or for MoE the active experts' total width."""
    if model.moe and model.num_moe_layers == model.num_layers:
        return (
            model.moe.experts_per_token * model.moe.expert_intermediate_size
            + model.moe.shared_expert_intermediate_size
        )
    return model.intermediate_size


def plan_cases(
    model: ModelSpec,
    settings: SweepSettings,
    *,
    tps: list[int],
    pps: list[int],
    replicas: list[int],
    dtypes: list[SweepDtype],
    heads: list[HeadsMode] | None,
) -> tuple[list[Case], list[Case]]:
    """Cases to run, smallest process group first, and cases no engine accepts that were not asked
    for (`heads_refused` says why)."""
    cases, skipped = [], []
    h = model.num_attention_heads
    for tp in tps:
        for pp in pps:
            for r in replicas:
                accepted = [e for e in engines.ENGINES if engines.check(e, model, tp=tp, pp=pp).ok]
                forms: list[tuple[HeadsMode, list[str]]]
                forms = [("even", accepted)] if h % tp == 0 else [(f, []) for f in heads or []]
                for dtype in dtypes:
                    for form, ok in forms or [("uneven", [])]:
                        key = case_key(model, settings, tp=tp, pp=pp, replicas=r, dtype=dtype, heads=form)
                        case = Case(
                            key=key,
                            tp=tp,
                            pp=pp,
                            replicas=r,
                            dtype=dtype,
                            heads_mode=form,
                            engines_accepting=ok,
                        )
                        (cases if forms else skipped).append(case)
    cases.sort(key=lambda c: c.ranks)  # stable: one process group per size, reused by its cases
    return cases, skipped


def heads_refused(model: ModelSpec, tp: int) -> str:
    return (
        f"{model.num_attention_heads} heads do not divide by tp {tp}; {UNEVEN_REFUSED}; {PADDED_REFUSED}. "
        "Measure it anyway with --heads uneven,padded"
    )


def cores_ratio(ranks: int) -> float:
    return round(ranks / cpu_cores(), 3)
