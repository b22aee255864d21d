"""What a sweep will run: its cases (layout × dtype × heads form), shared settings and layer sample.

Pure Python (no torch): the CLI validates flags against it before any process starts, and the
runner hands the resulting `SweepJob` to every rank as JSON.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from .. import engines
from ..errors import ConfigError, LayoutError
from ..memory import GIB
from ..records import HeadsMode, Measurement, SweepDtype
from ..specs import DTYPE_BYTES, HardwareProfile, ModelSpec
from ..specs.base import Frozen

DTYPES: tuple[SweepDtype, ...] = ("fp32", "bf16", "fp16")
HEADS_FORMS: tuple[HeadsMode, ...] = ("uneven", "padded")
# More local ranks than this per core only measures the scheduler; TP=8 on 2 cores is the edge.
MAX_RANKS_PER_CORE = 4
# Automatic layer sample on CPU: at most what one step does in about this long at the profile's
# FLOP/s (a sweep of 2 dtypes × 3 TP degrees then stays in the low minutes).
CPU_STEP_BUDGET_S = 2.0
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
    atol: Annotated[float, Field(ge=0)]
    rtol: Annotated[float, Field(ge=0)]
    seed: int = 0


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
    model: ModelSpec, s: SweepSettings, tp: int, pp: int, replicas: int, dtype: str, heads: str
) -> str:
    """Identity of a measurement: what `--resume` matches (changing --tokens/--batch/--layers measures anew)."""
    return f"{model.name}/tp{tp}-pp{pp}-r{replicas}/{dtype}/{heads}/t{s.tokens}x{s.batch}/L{s.layers}"


def parse_dtypes(text: str | None, model: ModelSpec) -> list[SweepDtype]:
    if text is None:
        return [model.dtype] if model.dtype in DTYPES else ["bf16"]  # type: ignore[list-item]
    out: list[SweepDtype] = []
    for item in (t.strip() for t in text.split(",")):
        if item not in DTYPES:
            raise ConfigError(
                f"{item!r} is not a dtype the sweep can run",
                field="--dtype",
                expected="a comma-separated list of fp32, bf16, fp16 (fp8 needs engine kernels)",
            )
        if item not in out:
            out.append(item)  # type: ignore[arg-type]
    return out


def parse_heads(text: str | None) -> list[HeadsMode] | None:
    """`--heads uneven,padded`; None means only the forms the engines accept."""
    if text is None:
        return None
    forms = [t.strip() for t in text.split(",") if t.strip()]
    bad = [f for f in forms if f not in HEADS_FORMS]
    if bad or not forms:
        raise ConfigError(
            f"{bad[0] if bad else text!r} is not a heads form",
            field="--heads",
            expected="uneven, padded or both (uneven,padded)",
        )
    return [f for f in HEADS_FORMS if f in forms]


def local_rank_limit(backend: str, gpus_found: int) -> tuple[int, str]:
    """Ranks one machine may run, and why: one per GPU, or MAX_RANKS_PER_CORE per CPU core."""
    if backend == "nccl":
        return gpus_found, f"{gpus_found} CUDA device(s) found"
    cores = cpu_cores()
    return MAX_RANKS_PER_CORE * cores, f"{MAX_RANKS_PER_CORE} CPU ranks per core on {cores} core(s)"


def check_layouts(
    model: ModelSpec, tps: list[int], pps: list[int], replicas: list[int], limit: int, why: str
) -> None:
    for tp in tps:
        if tp > model.num_attention_heads:
            raise LayoutError(
                f"--tp {tp} exceeds num_attention_heads ({model.num_attention_heads}) of {model.name}; "
                "a rank would hold no heads"
            )
    for pp in pps:
        if pp > model.num_layers:
            raise LayoutError(f"--pp {pp} exceeds num_layers ({model.num_layers}) of {model.name}")
    need = max(tps) * max(pps) * max(replicas)
    if max(tps) * max(pps) > limit:
        raise LayoutError(
            f"--tp {max(tps)} × --pp {max(pps)} needs {max(tps) * max(pps)} local ranks; this machine "
            f"allows {limit} ({why}). Lower --tp/--pp, or run across nodes under torchrun"
        )
    if need > limit:
        raise LayoutError(
            f"{max(replicas)} replicas of TP{max(tps)}×PP{max(pps)} need {need} local ranks; "
            f"this machine allows {limit} ({why}); lower --replicas"
        )


def layer_params(model: ModelSpec) -> float:
    """Parameters of one decoder layer as the sweep builds it (MoE as a dense FFN of the active width)."""
    h, hd = model.hidden_size, model.head_dim
    attn = h * (model.num_attention_heads + 2 * model.num_kv_heads) * hd + model.num_attention_heads * hd * h
    mlp = (3 if model.gated_mlp else 2) * h * ffn_width(model)
    return attn + mlp + 2 * h


def ffn_width(model: ModelSpec) -> int:
    """FFN width the sweep runs: the dense width, or for MoE the active experts' total width."""
    if model.moe and model.num_moe_layers == model.num_layers:
        return (
            model.moe.experts_per_token * model.moe.expert_intermediate_size
            + model.moe.shared_expert_intermediate_size
        )
    return model.intermediate_size


def auto_layers(
    model: ModelSpec,
    backend: str,
    min_tp: int,
    max_pp: int,
    dtypes: list[str],
    tokens: int,
    batch: int,
    rank_memory_gib: float,
    tflops: float,
) -> tuple[int, str]:
    """How many real-width layers to run when --layers is not given, and why."""
    L = model.num_layers
    worst = max(DTYPE_BYTES[d] for d in dtypes)
    full = layer_params(model)
    # A rank holds its shard of every layer, builds one full layer in fp32 at a time (then slices
    # it), and keeps ~12 hidden-widths of activations per token live.
    shard_bytes = full / min_tp * worst
    act_bytes = tokens * batch * model.hidden_size * 12 * worst
    free = rank_memory_gib * GIB - full * 4 - act_bytes
    by_memory = int(free // shard_bytes) if free > 0 else 0
    if by_memory < 1:
        raise LayoutError(
            f"one layer of {model.name} needs {(full * 4 + shard_bytes + act_bytes) / GIB:.1f} GiB on a rank at "
            f"tp {min_tp}; a rank has {rank_memory_gib:.1f} GiB here. Use a larger --tp or fewer --tokens"
        )
    k, why = min(L, by_memory), "memory"  # as if every layer sat on one stage (PP only frees memory)
    if backend == "gloo":
        flops_per_layer = 2 * full * tokens * batch
        by_time = max(1, int(CPU_STEP_BUDGET_S * tflops * 1e12 // flops_per_layer))
        if by_time < k:
            k, why = by_time, f"a ~{CPU_STEP_BUDGET_S:g} s step at the profile's {tflops:g} TFLOP/s"
    k = max(k, max_pp)
    return k, ("all layers" if k == L else f"{k} of {L} layers (limited by {why}; set --layers to change)")


def plan_cases(
    model: ModelSpec,
    settings: SweepSettings,
    tps: list[int],
    pps: list[int],
    replicas: list[int],
    dtypes: list[SweepDtype],
    heads: list[HeadsMode] | None,
) -> tuple[list[Case], list[Measurement]]:
    """Cases to run, smallest process group first, and the layouts skipped (with why) as Measurements."""
    cases, skipped = [], []
    h = model.num_attention_heads
    for tp in tps:
        for pp in pps:
            for r in replicas:
                accepted = [e for e in engines.ENGINES if engines.check(e, model, tp, pp).ok]
                forms: list[tuple[HeadsMode, list[str]]]
                forms = [("even", accepted)] if h % tp == 0 else [(f, []) for f in heads or []]
                for dtype in dtypes:
                    if not forms:
                        skipped.append(
                            skipped_case(model, settings, tp, pp, r, dtype, cores_ratio(tp * pp * r))
                        )
                    for form, ok in forms:
                        key = case_key(model, settings, tp, pp, r, dtype, form)
                        cases.append(
                            Case(
                                key=key,
                                tp=tp,
                                pp=pp,
                                replicas=r,
                                dtype=dtype,
                                heads_mode=form,
                                engines_accepting=ok,
                            )
                        )
    cases.sort(key=lambda c: c.ranks)  # stable: one process group per size, reused by its cases
    return cases, skipped


def cores_ratio(ranks: int) -> float:
    return round(ranks / cpu_cores(), 3)


def skipped_case(
    model: ModelSpec, s: SweepSettings, tp: int, pp: int, r: int, dtype: SweepDtype, ranks_per_core: float
) -> Measurement:
    h = model.num_attention_heads
    reason = (
        f"{h} heads do not divide by tp {tp}; {UNEVEN_REFUSED}; {PADDED_REFUSED}. "
        "Measure it anyway with --heads uneven,padded"
    )
    return Measurement(
        key=case_key(model, s, tp, pp, r, dtype, "uneven"),
        tp=tp,
        pp=pp,
        replicas=r,
        model=model.name,
        dtype=dtype,
        tokens=s.tokens,
        batch=s.batch,
        microbatches=1,
        heads_mode="uneven",
        status="skipped",
        reason=reason,
        backend=s.backend,
        layers_measured=s.layers,
        layers_total=model.num_layers,
        heads_per_rank=engines.split(h, tp),
        ranks_per_core=ranks_per_core,
        representative=ranks_per_core <= 1,
        warmup=s.warmup,
        iters=s.iters,
    )


def available_memory_gib() -> float:
    """MemAvailable from /proc/meminfo (Linux), else physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB


def has_nvidia_gpu() -> bool:
    """A cheap look for an NVIDIA driver (no torch import): decides the default profile."""
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/gpus").is_dir()


class Request(Frozen):
    """The user's sweep flags, parsed (lists) but not yet checked against the model or machine."""

    tp: list[int] | None = None
    pp: list[int] = [1]
    replicas: list[int] = [1]
    dtypes: str | None = None
    heads: str | None = None
    tokens: int = 128
    batch: int = 2
    layers: int | None = None
    warmup: int = 5  # nccl-tests' defaults: 5 warm-up, 20 timed iterations
    iters: int = 20
    timeout_s: float = 60.0
    atol: float = 1e-2  # the seed's allclose tolerance
    rtol: float = 1e-2
    seed: int = 0


def _check_numbers(r: Request) -> None:
    for flag, value, lo in (
        ("--tokens", r.tokens, 1),
        ("--batch", r.batch, 1),
        ("--warmup", r.warmup, 0),
        ("--iters", r.iters, 1),
        ("--layers", r.layers, 1),
    ):
        if value is not None and value < lo:
            raise ConfigError(f"{value} is not allowed", field=flag, expected=f"an integer >= {lo}")
    for flag, fvalue, positive in (
        ("--timeout-s", r.timeout_s, True),
        ("--atol", r.atol, False),
        ("--rtol", r.rtol, False),
    ):
        if not (fvalue > 0 if positive else fvalue >= 0) or fvalue != fvalue or fvalue == float("inf"):
            raise ConfigError(
                f"{fvalue} is not allowed",
                field=flag,
                expected="a finite number > 0" if positive else "a finite number >= 0",
            )


def prepare(
    model: ModelSpec, profile: HardwareProfile, r: Request, rank_limit: tuple[int, str] | None = None
) -> tuple[SweepSettings, list[Case], list[Measurement], str]:
    """Check the flags against the model and this machine; the settings, cases, skipped layouts and
    a sentence on how many layers run. `rank_limit` overrides the local limit (torchrun's world)."""
    _check_numbers(r)
    dtypes = parse_dtypes(r.dtypes, model)
    heads = parse_heads(r.heads)
    backend = profile.backend
    if rank_limit is None:
        gpus = _cuda_devices() if backend == "nccl" else 0
        if backend == "nccl" and gpus == 0:
            raise LayoutError(
                f"profile {profile.name} runs NCCL on GPUs, and torch sees no CUDA device here; "
                "use --profile cpu-local to sweep on CPU ranks"
            )
        rank_limit = local_rank_limit(backend, gpus)
    limit, why = rank_limit
    tps = r.tp or [t for t in (1, 2, 4, 8) if t <= min(limit, model.num_attention_heads)]
    check_layouts(model, tps, r.pp, r.replicas, limit, why)
    if r.layers is not None:
        if r.layers < max(r.pp):
            raise ConfigError(
                f"{r.layers} is fewer than --pp {max(r.pp)}",
                field="--layers",
                expected=f"at least one layer per stage: --layers >= {max(r.pp)}",
            )
        layers = min(r.layers, model.num_layers)
        why_layers = (
            "all layers"
            if layers == model.num_layers
            else f"{layers} of {model.num_layers} layers (--layers)"
        )
    else:
        ranks = max(tps) * max(r.pp) * max(r.replicas)
        memory = profile.gpu.memory_gib.value
        if backend == "gloo":
            memory = min(memory, 0.8 * available_memory_gib() / ranks)
        layers, why_layers = auto_layers(
            model,
            backend,
            min(tps),
            max(r.pp),
            dtypes,
            r.tokens,
            r.batch,
            memory,
            profile.gpu.bf16_dense_tflops.value,
        )
    settings = SweepSettings(
        model=model,
        backend=backend,
        tokens=r.tokens,
        batch=r.batch,
        layers=layers,
        warmup=r.warmup,
        iters=r.iters,
        timeout_s=r.timeout_s,
        atol=r.atol,
        rtol=r.rtol,
        seed=r.seed,
    )
    cases, skipped = plan_cases(model, settings, tps, r.pp, r.replicas, dtypes, heads)
    return settings, cases, skipped, why_layers


def _cuda_devices() -> int:
    import torch  # only for NCCL profiles: how many GPUs this machine really has

    return torch.cuda.device_count()
