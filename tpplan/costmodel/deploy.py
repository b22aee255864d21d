"""A layout as the engines deploy it, priced: the candidates stage places it and judges its memory
(once per layout), the engine's batch defaults bound its steps, and the cost model prices it.

Used by every command that prices a layout on loaded records (estimate, search, report, bench,
calibrate), so none of them re-derives placement or engine limits.
"""

from __future__ import annotations

import dataclasses

from .. import candidates as candidates_stage
from .. import engines, io
from ..errors import ConfigError, LayoutError
from ..records import AllReduceEstimate, Candidate, Layout, ServeEstimate
from ..specs import HardwareProfile, ModelSpec, Workload
from .calibrate import CALIBRATION_ENGINES, MEMORY_PROXY
from .estimate import Deployment, estimate_allreduce, price_deployment
from .serving import EngineConfig


def known_engine(engine: str) -> engines.Engine:
    if engine not in engines.ENGINES:
        raise ConfigError(
            f"{engine!r} is not an engine tpplan knows", field="engine", expected=", ".join(engines.ENGINES)
        )
    return engine  # type: ignore[return-value]


def engine_config(engine: str, model: ModelSpec, profile: HardwareProfile, tp: int, pp: int) -> EngineConfig:
    """The engine's batch limits for this layout (its published defaults; Megatron's are assumed)."""
    if engine in CALIBRATION_ENGINES:
        return CALIBRATION_ENGINES[engine]
    d = engines.defaults(
        known_engine(engine),
        profile.gpu.name,
        memory_gib=profile.gpu.memory_gib.value,
        tp=tp,
        pp=pp,
        model=model,
    )
    source = {
        "vllm": "vLLM 0.33.0 get_batch_defaults (vllm/engine/arg_utils.py)",
        "sglang": "SGLang 0.5.23 automatic chunked_prefill_size / cuda_graph_max_bs (memory_hook.py)",
        "megatron": "Megatron-LM inference defaults",
    }[engine]
    basis = "assumed" if engine == "megatron" else "published"  # Megatron-LM has no serving defaults
    return EngineConfig(engine, d.max_num_batched_tokens, d.max_num_seqs, False, source, basis)


def deployment(
    model: ModelSpec,
    profile: HardwareProfile,
    *,
    layout: Layout,
    engine: str,
    kv_dtype: str,
    seq_tokens: int,
    budget_gpus: int | None = None,
    candidate: Candidate | None = None,
) -> Deployment:
    """Placement and memory of a layout, as the candidates stage judges them (budget: the layout's
    GPUs unless given: a larger budget can place instances that would not pack into fewer nodes).
    `candidate`: that judgement when the caller already has it (the engine rules run once per layout)."""
    memory_engine = known_engine(MEMORY_PROXY.get(engine, engine))
    budget = budget_gpus or layout.gpus
    # The engine's "accepts tp in ..." names the degrees the hardware could run, not only up to this
    # layout's own GPU count (TP=3 is refused; 4 and 8 are the alternatives on an 8-GPU node).
    tp_limit = max(budget, profile.total_gpus)
    c = candidate or candidates_stage.judge(
        model,
        profile,
        layout=layout,
        engine=memory_engine,
        budget_gpus=budget,
        max_model_len=seq_tokens,
        kv_dtype=kv_dtype,
        tp_limit=tp_limit,
    )
    stage_link = (
        "network"
        if c.crosses_node and c.tp_fabric != "network"
        else ("nvlink" if profile.domain_size > 1 else "pcie")
    )
    note = (
        f"{c.kv_cache_gib_per_gpu:g} GiB per GPU left of {c.memory_budget_gib_per_gpu:g} GiB "
        f"({memory_engine} memory fraction) after {c.weights_gib_per_gpu:g} GiB weights and "
        f"{c.activation_gib_per_gpu:g} GiB activations/runtime"
    )
    return Deployment(
        tuple(c.layers_per_stage),
        c.tp_fabric,
        stage_link if layout.pp > 1 else "none",
        c.kv_cache_tokens,
        tuple(r for r in c.reasons if r.kind == "engine"),
        tuple(r for r in c.reasons if r.kind != "engine"),
        c.crosses_nvlink_domain,
        c.nodes,
        note,
    )


def allreduce_on(profile: HardwareProfile, *, nbytes: int, ranks: int) -> AllReduceEstimate:
    """One all-reduce over `ranks` GPUs of the profile, placed from GPU 0 (more than a node: several nodes)."""
    layout = io.validate(Layout, {"tp": ranks}, file="command line", prefix="--ranks as ")
    where = candidates_stage.place(profile, layout, budget_gpus=_whole_nodes(profile, ranks))
    if where.problem:
        raise LayoutError(
            f"--ranks {ranks} on {profile.name}: {where.problem}; valid: {_valid_ranks(profile, ranks)}"
        )
    return estimate_allreduce(profile, nbytes, ranks=ranks, fabric=where.tp_fabric)


def _whole_nodes(profile: HardwareProfile, ranks: int) -> int:
    """GPUs of the whole nodes `ranks` ranks need (or the profile's, if more): the group may use them."""
    gpn = profile.gpus_per_node
    return max(-(-ranks // gpn) * gpn, profile.total_gpus)


def _valid_ranks(profile: HardwareProfile, ranks: int) -> str:
    """What --ranks can be on this profile: up to a node, and (with an inter-node fabric) the counts
    that split evenly over the nodes they need; the nearest few around `ranks`."""
    gpn = profile.gpus_per_node
    if profile.inter_node is None:
        return f"1 to {gpn} (one node)"

    # Over k = ceil(n / gpn) nodes the engines start n / k ranks on each (placement.instance_gpus).
    def splits(n: int) -> bool:
        return n % -(-n // gpn) == 0

    above = [n for n in range(max(ranks, gpn) + 1, max(ranks, gpn) + 4 * gpn) if splits(n)][:3]
    below = [n for n in range(ranks - 1, gpn, -1) if splits(n)][:2][::-1]
    return (
        f"1 to {gpn} on one node, or across nodes a count that splits evenly over them: "
        f"{', '.join(map(str, below + above))}, ..."
    )


def check_dtype(profile: HardwareProfile, dtype: str) -> None:
    """fp8 weights only on GPUs with FP8 tensor cores (the rule search's space applies: dtype_pairs)."""
    if dtype == "fp8" and not profile.gpu.supports_fp8:
        raise ConfigError(
            f"{profile.gpu.name} has no FP8 tensor cores",
            field="dtype",
            value="fp8",
            expected="bf16 or fp16 on this profile",
        )


def price_layout(
    model: ModelSpec,
    profile: HardwareProfile,
    *,
    layout: Layout,
    workload: Workload,
    engine: str = "vllm",
    max_num_seqs: int | None = None,
    budget_gpus: int | None = None,
    max_model_len: int | None = None,
    candidate: Candidate | None = None,
) -> ServeEstimate:
    """Serving `workload` on `layout` as `engine` deploys it, on loaded records (the search prices
    thousands of layouts without re-reading files). `max_num_seqs` caps sequences per instance (default: the engine's); `budget_gpus` is the
    budget the instances are placed on (default: the layout's own GPUs); `max_model_len` is the context
    one sequence must fit in the KV cache (default: the workload's input + output tokens); `candidate`
    is the candidates stage's judgement of this layout when the caller has made it (with the same engine,
    budget, context and KV dtype), so the engine rules are not run again."""
    check_dtype(profile, workload.dtype)
    served = model.model_copy(update={"dtype": workload.dtype})
    dep = deployment(
        served,
        profile,
        layout=layout,
        engine=engine,
        kv_dtype=workload.kv_dtype_of(model),
        seq_tokens=max_model_len or workload.sequence_tokens,
        budget_gpus=budget_gpus,
        candidate=candidate,
    )
    cfg = engine_config(engine, served, profile, layout.tp, layout.pp)
    if max_num_seqs is not None:
        cfg = dataclasses.replace(
            cfg, max_num_seqs=max_num_seqs, source=f"{cfg.source}; max_num_seqs as planned"
        )
    return price_deployment(model, profile, layout=layout, workload=workload, engine=cfg, dep=dep)
