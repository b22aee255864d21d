"""Candidates: every TP × PP × replica layout of a GPU budget, judged for an engine.

For each layout: the engine's own rules (engines.py), whether weights + activations + a
KV cache of `max_model_len` tokens fit at the engine's default memory fraction (memory.py),
and where it lands on the hardware as the engines place it (placement.py: instances packed node by
node, a multi-node instance with world_size / nnodes ranks per node, ranks DP × PP × TP with TP
innermost), so a TP group either stays inside one NVLink domain or crosses it.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass

from . import engines, memory, moe_rules, placement
from .errors import LayoutError
from .records import Candidate, Layout, Reason
from .specs import HardwareProfile, ModelSpec, resolve_kv_dtype

# Memory outside torch tensors: CUDA context, NCCL buffers, CUDA-graph pools. Assumed, from the
# 0.5–1.5 GiB vLLM reports as non-torch + cudagraph memory in its start-up log.
RUNTIME_OVERHEAD_GIB = 1.5


@dataclass(frozen=True)
class Placement:
    nodes: int
    crosses_nvlink_domain: bool
    crosses_node: bool
    tp_fabric: str
    problem: str | None
    shape: tuple[int, int, int, int] = (1, 1, 1, 1)  # gpus_per_node, tp, pp, replicas

    @property
    def rank_gpus(self) -> tuple[tuple[int, ...], ...]:
        """Global GPU index of every rank of every instance (placement.instance_gpus: the engines' rule)."""
        gpn, tp, pp, replicas = self.shape
        return tuple(map(tuple, placement.instance_gpus(gpn, tp, pp=pp, replicas=replicas)[0]))


def place(profile: HardwareProfile, layout: Layout, *, budget_gpus: int) -> Placement:
    """Place the instances as the engines start them (placement.py); say which links their TP/PP
    groups use and whether the budget holds them."""
    gpn, world = profile.gpus_per_node, layout.world_size
    budget_nodes = math.ceil(budget_gpus / gpn)
    first, problem = placement.instance_gpus(gpn, layout.tp, pp=layout.pp, replicas=1)
    nodes, last_gpu = placement.extent(gpn, layout.tp, pp=layout.pp, replicas=layout.replicas)
    if problem is None and (nodes > budget_nodes or last_gpu >= budget_gpus):
        problem = (
            f"needs {nodes} node(s) of {gpn} GPUs to place {layout.replicas} instance(s) of {world} GPUs "
            f"without splitting one across nodes; the budget of {budget_gpus} GPUs has {budget_nodes}"
        )
    groups = placement.tp_groups(first[0], layout.tp)  # every instance has the same shape; the first tells
    crosses_domain = any(len({profile.domain_of(g) for g in grp}) > 1 for grp in groups)
    tp_crosses_node = any(len({profile.node_of(g) for g in grp}) > 1 for grp in groups)
    crosses_node = len({profile.node_of(g) for g in first[0]}) > 1
    if layout.tp == 1:
        fabric = "none"
    elif not crosses_domain and profile.domain_size > 1:
        fabric = "nvlink"
    elif not tp_crosses_node:
        fabric = "pcie"
    else:
        fabric = "network"
    if crosses_node and profile.inter_node is None and problem is None:
        problem = f"a TP or PP group spans nodes, but profile {profile.name} has no inter-node fabric"
    shape = (gpn, layout.tp, layout.pp, layout.replicas)
    return Placement(nodes, crosses_domain, crosses_node, fabric, problem, shape)


@dataclass(frozen=True)
class MemoryFit:
    """Per-GPU memory of one instance, in bytes (the tightest stage decides)."""

    fraction: float
    budget: float
    weights_max: float
    reserve: float
    kv_free_min: float
    kv_tokens: int


def memory_fit(
    model: ModelSpec,
    profile: HardwareProfile,
    *,
    tp: int,
    layers_per_stage: list[int],
    engine: engines.Engine,
    kv_dtype: str,
    dp: int = 1,
) -> MemoryFit:
    """Budget = memory × the engine's fraction; what weights and activations leave is KV cache.
    An instance holds as many tokens as its tightest stage can (vLLM takes the min over workers);
    with `dp` attention groups each caches its own requests at attention TP tp/dp, so they add up."""
    gpu = profile.gpu
    eng = engines.defaults(
        engine, gpu.name, memory_gib=gpu.memory_gib.value, tp=tp, pp=len(layers_per_stage), model=model
    )
    fraction = eng.memory_fraction
    budget = gpu.memory_gib.value * memory.GIB * fraction
    weights = memory.weight_bytes_per_stage(model, tp, layers_per_stage, dp=dp)
    # Engines profile peak activations with one full batch of max_num_batched_tokens.
    reserve = (
        memory.activation_memory_bytes(model, tp, eng.max_num_batched_tokens, dp=dp)
        + RUNTIME_OVERHEAD_GIB * memory.GIB
    )
    free = [budget - w - reserve for w in weights]
    tokens = [
        math.floor(f / memory.kv_bytes_per_token(model, tp // dp, n, kv_dtype)) if n and f > 0 else 0
        for f, n in zip(free, layers_per_stage, strict=True)
    ]
    kv_tokens = memory.kv_tokens_per_instance(min(tokens), dp)
    return MemoryFit(fraction, budget, max(weights), reserve, min(free), kv_tokens)


def enumerate_layouts(budget_gpus: int, num_layers: int, *, full_budget: bool = False) -> list[Layout]:
    """All tp × pp × replicas using at most (or, with full_budget, exactly) the budget."""
    out = []
    for tp in range(1, budget_gpus + 1):
        for pp in range(1, min(budget_gpus // tp, num_layers) + 1):
            for r in range(1, budget_gpus // (tp * pp) + 1):
                if not full_budget or tp * pp * r == budget_gpus:
                    out.append(Layout(tp=tp, pp=pp, replicas=r))
    return out


def judge(
    model: ModelSpec,
    profile: HardwareProfile,
    *,
    layout: Layout,
    engine: engines.Engine,
    budget_gpus: int,
    max_model_len: int | None = None,
    kv_dtype: str | None = None,
    tp_limit: int | None = None,
) -> Candidate:
    """One layout's verdict: engine rules, memory fit, placement. `tp_limit`: the largest TP degree the
    engine's "accepts tp in ..." list names (default: the budget; a one-layout budget is too small to
    show the alternatives)."""
    if layout.gpus > budget_gpus:
        raise LayoutError(f"{layout.label()} needs {layout.gpus} GPUs; the budget is {budget_gpus}")
    verdict = engines.check(
        engine,
        model,
        tp=layout.tp,
        pp=layout.pp,
        tp_limit=tp_limit or budget_gpus,
        ep=layout.ep,
        dp=layout.dp_attention,
    )
    reasons = list(verdict.reasons)
    notes: list[str] = list(model.notes)
    max_len = max_model_len or model.max_position_embeddings

    kv = resolve_kv_dtype(kv_dtype or "auto", model.dtype, model.activation_dtype, model.checkpoint_kv_dtype)
    mem = memory_fit(
        model,
        profile,
        tp=layout.tp,
        layers_per_stage=verdict.layers_per_stage,
        engine=engine,
        kv_dtype=kv,
        dp=layout.dp_attention,
    )
    gib = memory.GIB
    fits = mem.kv_free_min > 0 and mem.kv_tokens >= max_len
    if mem.kv_free_min <= 0:
        text = (
            f"weights {mem.weights_max / gib:.1f} GiB + {mem.reserve / gib:.1f} GiB activations/runtime per GPU "
            f"exceed {mem.budget / gib:.1f} GiB ({profile.gpu.memory_gib.value:g} GiB × {mem.fraction:g} "
            f"{engine} memory fraction)"
        )
        reasons.append(Reason(kind="memory", text=text))
    elif mem.kv_tokens < max_len:
        reasons.append(
            Reason(
                kind="context",
                text=f"KV cache holds {mem.kv_tokens:,} tokens, fewer than max_model_len {max_len:,}",
                hint="lower --max-model-len or use more GPUs per instance",
            )
        )

    where = place(profile, layout, budget_gpus=budget_gpus)
    if layout.dp_attention > 1 and where.crosses_node and where.problem is None:
        # vLLM and SGLang need per-node data-parallel ranks and addresses then; tpplan does not emit them
        where = dataclasses.replace(
            where,
            problem=f"DP attention ({layout.dp_attention} groups) on an instance spanning nodes: "
            "tpplan plans it within one node only",
        )
    if where.problem:
        reasons.append(Reason(kind="placement", text=where.problem))
    if where.crosses_nvlink_domain:
        notes.append(
            f"TP={layout.tp} crosses the NVLink domain ({profile.domain_size} GPUs): its all-reduces run over "
            f"{'the inter-node network' if where.tp_fabric == 'network' else 'PCIe'}"
        )
    return Candidate(
        tp=layout.tp,
        pp=layout.pp,
        replicas=layout.replicas,
        ep=layout.ep,
        dp_attention=layout.dp_attention,
        engine=engine,
        engine_ok=verdict.ok,
        fits=fits,
        valid=verdict.ok and fits and where.problem is None,
        reasons=reasons,
        notes=notes,
        heads_per_rank=verdict.heads_per_rank,
        kv_heads_per_rank=verdict.kv_heads_per_rank,
        layers_per_stage=verdict.layers_per_stage,
        weights_gib_per_gpu=round(mem.weights_max / gib, 3),
        activation_gib_per_gpu=round(mem.reserve / gib, 3),
        memory_budget_gib_per_gpu=round(mem.budget / gib, 3),
        kv_cache_gib_per_gpu=round(max(0.0, mem.kv_free_min) / gib, 3),
        kv_cache_tokens=mem.kv_tokens,
        max_model_len=max_len,
        crosses_nvlink_domain=where.crosses_nvlink_domain,
        crosses_node=where.crosses_node,
        tp_fabric=where.tp_fabric,
        nodes=where.nodes,
        idle_gpus=budget_gpus - layout.gpus,
    )


def why_none_valid(found: list[Candidate], budget_gpus: int) -> str:
    """Why a listing has no valid layout: the first reasons most layouts share, or that none was listed."""
    if not found:
        return (
            f"no TP x PP x replica layout matches --tp/--pp/--full-budget within {budget_gpus} GPUs "
            "(TP x PP x replicas <= the budget, PP <= the model's layers)"
        )
    counts = Counter(c.reasons[0].text.split(";")[0] for c in found if c.reasons)
    shown = "; ".join(f"{reason} ({n} of {len(found)} layouts)" for reason, n in counts.most_common(2))
    return "no layout is valid: " + (shown or "every layout was refused")


def candidates(
    model: ModelSpec,
    profile: HardwareProfile,
    *,
    engine: engines.Engine = "vllm",
    budget_gpus: int | None = None,
    max_model_len: int | None = None,
    full_budget: bool = False,
) -> list[Candidate]:
    """Every layout of the budget (default: all GPUs of the profile), judged; for an MoE model each
    TP × PP × replicas also with the expert / attention layouts the engine accepts (moe_rules.modes)."""
    budget = budget_gpus or profile.total_gpus
    layouts = [
        lay.model_copy(update={"ep": ep, "dp_attention": dp})
        for lay in enumerate_layouts(budget, model.num_layers, full_budget=full_budget)
        for ep, dp in moe_rules.modes(engine, model, tp=lay.tp, pp=lay.pp)
    ]
    return [
        judge(model, profile, layout=lay, engine=engine, budget_gpus=budget, max_model_len=max_model_len)
        for lay in layouts
    ]
