"""The user's sweep flags checked against the model and this machine, and turned into a plan.

Every bad flag becomes one ConfigError / LayoutError line (`--dtype fp9`, `--tp 0`, a TP larger
than the ranks this machine allows, ...). Pure Python: no torch unless the profile is NCCL.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError, LayoutError
from ..memory import GIB
from ..records import HeadsMode, Measurement, SweepDtype
from ..records.requests import SweepRequest
from ..specs import DTYPE_BYTES, HardwareProfile, ModelSpec
from .cases import (
    DTYPES,
    HEADS_FORMS,
    Case,
    SweepSettings,
    cores_ratio,
    cpu_cores,
    ffn_width,
    heads_refused,
    plan_cases,
)
from .collect import failure

# More local ranks than this per core only measures the scheduler; TP=8 on 2 cores is the edge.
MAX_RANKS_PER_CORE = 4
# Automatic layer sample on CPU: at most what one step does in about this long at the profile's
# FLOP/s (a sweep of 2 dtypes × 3 TP degrees then stays in the low minutes).
CPU_STEP_BUDGET_S = 2.0
CPU_BUILD_BUDGET_S = 30.0
RNG_VALUES_PER_S = 1.5e8  # torch normal_ on one thread, measured ~1.7e8/s on this project's 2-core CI VM


def parse_dtypes(names: list[str] | None, model: ModelSpec) -> list[SweepDtype]:
    """The dtypes asked for (the request has split and de-duplicated them), each one the sweep runs."""
    if names is None:
        return [model.dtype] if model.dtype in DTYPES else ["bf16"]  # type: ignore[list-item]
    for item in names:
        if item not in DTYPES:
            raise ConfigError(
                f"{item!r} is not a dtype the sweep can run",
                field="dtypes",
                expected="a comma-separated list of fp32, bf16, fp16 (fp8 needs engine kernels)",
            )
    return names  # type: ignore[return-value]


def parse_heads(names: list[str] | None) -> list[HeadsMode] | None:
    """The head forms asked for (uneven, padded); None means only the forms the engines accept."""
    if names is None:
        return None
    bad = [f for f in names if f not in HEADS_FORMS]
    if bad:
        raise ConfigError(
            f"{bad[0]!r} is not a heads form",
            field="heads",
            expected="uneven, padded or both (uneven,padded)",
        )
    return [f for f in HEADS_FORMS if f in names]


def local_rank_limit(backend: str, gpus_found: int) -> tuple[int, str]:
    """Ranks one machine may run, and why: one per GPU, or MAX_RANKS_PER_CORE per CPU core."""
    if backend == "nccl":
        return gpus_found, f"{gpus_found} CUDA device(s) found"
    cores = cpu_cores()
    return MAX_RANKS_PER_CORE * cores, f"{MAX_RANKS_PER_CORE} CPU ranks per core on {cores} core(s)"


def check_layouts(
    model: ModelSpec, tps: list[int], *, pps: list[int], replicas: list[int], limit: int, why: str
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


def auto_layers(
    model: ModelSpec,
    backend: str,
    *,
    min_tp: int,
    max_pp: int,
    dtypes: list[str],
    tokens: int,
    batch: int,
    memory_gib: float,
    ranks: int,
    replicas: int,
    tflops: float,
) -> tuple[int, str]:
    """How many real-width layers to run when --layers is not given, and why.

    NCCL: `memory_gib` is one GPU's, which holds 1/tp of each layer. gloo: it is the host RAM all
    `ranks` share; each of the `replicas` instances holds every layer once across its ranks, and
    one full layer in fp32 exists while a rank builds it (one rank at a time, worker.SERIAL_BUILD_BYTES)."""
    L = model.num_layers
    worst = max(DTYPE_BYTES[d] for d in dtypes)
    full = layer_params(model)
    act_bytes = tokens * batch * model.hidden_size * 12 * worst  # ~12 hidden-widths live per token
    if backend == "gloo":
        free, per_layer = memory_gib * GIB - full * 4 - ranks * act_bytes, replicas * full * worst
    else:
        free, per_layer = memory_gib * GIB - act_bytes, full / min_tp * worst
    by_memory = int(free // per_layer) if free > 0 else 0
    if by_memory < 1:
        raise LayoutError(
            f"one layer of {model.name} at tp {min_tp} does not fit: {memory_gib:.1f} GiB available "
            f"({'host RAM for all CPU ranks' if backend == 'gloo' else 'per GPU'}). Use a larger --tp, "
            "fewer --tokens or a smaller model"
        )
    k, why = min(L, by_memory), "memory"  # as if every layer sat on one stage (PP only frees memory)
    if backend == "gloo":
        flops_per_layer = 2 * full * tokens * batch
        by_time = max(1, int(CPU_STEP_BUDGET_S * tflops * 1e12 // flops_per_layer))
        if by_time < k:
            k, why = by_time, f"a ~{CPU_STEP_BUDGET_S:g} s step at the profile's {tflops:g} TFLOP/s"
        # every rank draws each of its layers whole before slicing: ranks × k × full random numbers
        by_build = max(1, int(CPU_BUILD_BUDGET_S * RNG_VALUES_PER_S // (ranks * full)))
        if by_build < k:
            k, why = by_build, f"~{CPU_BUILD_BUDGET_S:g} s to draw the weights of {ranks} rank(s)"
    k = max(k, max_pp)
    return k, ("all layers" if k == L else f"{k} of {L} layers (limited by {why}; set --layers to change)")


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


def prepare(
    model: ModelSpec, profile: HardwareProfile, *, r: SweepRequest, rank_limit: tuple[int, str] | None = None
) -> tuple[SweepSettings, list[Case], list[Measurement], str]:
    """Check the flags against the model and this machine; the settings, cases, skipped layouts and
    a sentence on how many layers run. `rank_limit` overrides the local limit (torchrun's world)."""
    dtypes = parse_dtypes(r.dtypes, model)
    heads = parse_heads(r.heads)
    backend = profile.backend
    default_limit = None
    if rank_limit is None and backend == "gloo":
        # Default TP degrees on CPU: one rank per core (and TP=2 always, for a drift check); more ranks
        # than cores wait for a core and the case is flagged unrepresentative. --tp still goes further.
        default_limit = max(2, cpu_cores())
    if rank_limit is None:
        gpus = _cuda_devices() if backend == "nccl" else 0
        if backend == "nccl" and gpus == 0:
            raise LayoutError(
                f"profile {profile.name} runs NCCL on GPUs, and torch sees no CUDA device here; "
                "use --profile cpu-local to sweep on CPU ranks"
            )
        rank_limit = local_rank_limit(backend, gpus)
    limit, why = rank_limit
    others = max(r.pp) * max(r.replicas)  # default TP degrees: powers of two that fit beside --pp/--replicas
    auto_limit = min(limit, max(default_limit, 2 * others) if default_limit else limit)
    tps = (
        r.tp
        or [t for t in (1, 2, 4, 8) if t <= model.num_attention_heads and t * others <= auto_limit]
        or [1]
    )
    check_layouts(model, tps, pps=r.pp, replicas=r.replicas, limit=limit, why=why)
    if r.layers is not None:
        if r.layers < max(r.pp):
            raise ConfigError(
                f"{r.layers} is fewer than the {max(r.pp)} pipeline stages",
                field="layers",
                expected=f"at least one layer per stage (>= {max(r.pp)})",
            )
        layers = min(r.layers, model.num_layers)
        why_layers = (
            "all layers"
            if layers == model.num_layers
            else f"{layers} of {model.num_layers} layers (--layers)"
        )
    else:
        ranks = max(tps) * max(r.pp) * max(r.replicas) if backend == "gloo" else 1
        memory = profile.gpu.memory_gib.value * ranks
        if backend == "gloo":  # CPU ranks share this host's RAM
            memory = min(memory, 0.8 * available_memory_gib())
        layers, why_layers = auto_layers(
            model,
            backend,
            min_tp=min(tps),
            max_pp=max(r.pp),
            dtypes=dtypes,
            tokens=r.tokens,
            batch=r.batch,
            memory_gib=memory,
            ranks=ranks,
            replicas=max(r.replicas),
            tflops=profile.gpu.bf16_dense_tflops.value,
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
    cases, refused = plan_cases(
        model, settings, tps=tps, pps=r.pp, replicas=r.replicas, dtypes=dtypes, heads=heads
    )
    skipped = [
        failure(
            settings,
            c,
            status="skipped",
            reason=heads_refused(model, c.tp),
            ranks_per_core=cores_ratio(c.ranks),
        )
        for c in refused
    ]
    return settings, cases, skipped, why_layers


def _cuda_devices() -> int:
    import torch  # only for NCCL profiles: how many GPUs this machine really has

    return torch.cuda.device_count()
