"""The cost model's answers: one all-reduce, and serving a workload at a layout.

Placement and memory (which link a TP group uses, how many KV tokens fit) are the candidates
stage's business; the façade passes them in as a `Deployment`, so this module prices a layout
without re-deriving where it lands.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..records import AllReduceEstimate, Layout, Provenance, Reason, ServeEstimate, StepBreakdown
from ..specs import HardwareProfile, ModelSpec, Workload
from .collectives import allreduce_time, alltoall_time, ring_factor
from .params import Params, of_sourced
from .serving import EngineConfig, Load, steady_state
from .spread import interval, spread_for
from .spread import provenance as spread_provenance
from .step import CATEGORIES, Instance, StepCost
from .work import ACTIVATION_BYTES


@dataclass(frozen=True)
class Deployment:
    """Where a layout lands and what memory leaves for the KV cache (from the candidates stage)."""

    layers_per_stage: tuple[int, ...]
    tp_fabric: str
    pp_fabric: str
    kv_tokens: int  # per instance
    engine_reasons: tuple[Reason, ...]  # why the engine refuses the layout (empty: it accepts it)
    reasons: tuple[Reason, ...]  # why it cannot run as asked otherwise (memory, context, placement)
    crosses_nvlink_domain: bool
    nodes: int
    memory_note: str  # how kv_tokens was derived (candidates.memory_fit), for provenance


def estimate_allreduce(
    profile: HardwareProfile, nbytes: int, *, ranks: int, fabric: str
) -> AllReduceEstimate:
    """One all-reduce of `nbytes` over `ranks` ranks of `profile` whose slowest link is `fabric`."""
    t = allreduce_time(Params(profile), nbytes, ranks=ranks, fabric=fabric)
    algbw = nbytes / (t.latency_us * 1e3) if t.latency_us else 0.0
    return AllReduceEstimate(
        bytes=nbytes,
        ranks=ranks,
        fabric=t.fabric,
        implementation=t.implementation,  # type: ignore[arg-type]
        algorithm=t.algorithm,
        latency_us=round(t.latency_us, 3),
        algbw_gbps=round(algbw, 3),
        busbw_gbps=round(algbw * ring_factor(ranks), 3) if ranks > 1 else 0.0,
        provenance=list(t.provenance.values()),
    )


def _mean_breakdown(decode: StepCost, mixed: StepCost, q: float) -> StepBreakdown:
    parts = {k: round((1 - q) * decode.parts[k] + q * mixed.parts[k], 4) for k in CATEGORIES}
    return StepBreakdown(
        compute_ms=parts["compute"],
        weight_reads_ms=parts["weight_reads"],
        kv_reads_ms=parts["kv_reads"],
        allreduce_ms=parts["allreduce"],
        p2p_ms=parts["p2p"],
        overhead_ms=parts["overhead"],
        bubble_ms=parts["bubble"],
        allreduce_count=decode.allreduce_count,
        allreduce_bytes=decode.allreduce_bytes,
        allreduce_us_each=round(decode.allreduce_us_each, 3),
        allreduce_implementation=decode.allreduce_implementation,
    )


def _provenance(
    params: Params, engine: EngineConfig, inst: Instance, dep: Deployment, decode_seqs: float
) -> dict[str, Provenance]:
    gpu = params.profile.gpu
    over = params.overhead(engine.name)
    out = {
        "bf16_dense_tflops": of_sourced(gpu.bf16_dense_tflops),
        "hbm_gbps": of_sourced(gpu.hbm_gbps),
        "gemm_fraction": params.gemm_fraction.provenance(),
        "hbm_fraction": params.hbm_fraction.provenance(),
        "step_ms": over.step_ms.provenance(),
        "per_layer_us": over.per_layer_us.provenance(),
        "per_seq_us": over.per_seq_us.provenance(),
        "request_ms": over.request_ms.provenance(),
        "cohort_fraction": over.cohort_fraction.provenance(),
        "kv_cache_tokens": Provenance(value=dep.memory_note, basis="derived", source="candidates.memory_fit"),
        "engine_limits": Provenance(
            value=f"max_num_batched_tokens {engine.max_num_batched_tokens}, max_num_seqs {engine.max_num_seqs}",
            basis=engine.basis,
            source=engine.source,
        ),
        "price": of_sourced(params.profile.price.usd_per_gpu_hour),
    }
    if params.kernels:  # the fractions then serve only ops no table covers
        k = params.kernels
        out["kernels"] = Provenance(value="kernel time by shape", basis=k.basis, source=k.source)
        for name in ("gemm_fraction", "hbm_fraction"):
            p = out[name]
            out[name] = p.model_copy(update={"value": "only for ops without a kernel table: " + p.value})
    if inst.model.dtype == "fp8" and gpu.fp8_dense_tflops:
        out["fp8_dense_tflops"] = of_sourced(gpu.fp8_dense_tflops)
    if inst.tp > 1:
        nbytes = max(decode_seqs, 1.0) * inst.model.hidden_size * ACTIVATION_BYTES
        out |= allreduce_time(
            params, nbytes, ranks=inst.tp, fabric=inst.tp_fabric, engine_kernels=inst.engine_kernels
        ).provenance
    if inst.pp > 1:
        out["p2p_alpha_us"] = params.p2p_alpha_us.provenance()
    if inst.ep > 1 and inst.dp > 1:
        out["alltoall"] = alltoall_time(params, 1.0, ranks=inst.ep, fabric=inst.tp_fabric)[1]
    return out


def ttft_note(params: Params, engine: str) -> str:
    """How much to trust the TTFT, in words. The figure itself is measured by `make bench`
    (bench/bench_costmodel.py against the reference serving points), not read here: the tool ships
    without the reference data. The closed-loop TTFT model is the least accurate part of the cost
    model there (a median error several times TPOT's), so no TTFT is printed without saying so."""
    over = params.overhead(engine)
    if over.request_ms.basis == "fitted" and over.cohort_fraction.basis == "fitted":
        return (
            "TTFT is rough: where its parameters were fitted (measured serving points), its error is several "
            "times TPOT's; `make bench` prints the measured median and p90"
        )
    return (
        f"TTFT is rough: request_ms and cohort_fraction are {over.request_ms.basis} for {engine} on this "
        "profile, and even where they were fitted its error is several times TPOT's (`make bench` prints it)"
    )


def price_deployment(
    model: ModelSpec,
    profile: HardwareProfile,
    *,
    layout: Layout,
    workload: Workload,
    engine: EngineConfig,
    dep: Deployment,
) -> ServeEstimate:
    """Serving `workload` (concurrency across all replicas, split evenly) on `layout` of `profile`."""
    params = Params(profile)
    served = model.model_copy(update={"dtype": workload.dtype})
    inst = Instance(
        served,
        layout.tp,
        dep.layers_per_stage,
        engine.name,
        workload.kv_dtype_of(model),
        dep.tp_fabric,
        dep.pp_fabric,
        ep=layout.ep,
        dp=layout.dp_attention,
    )
    per_instance = workload.concurrency / layout.replicas
    load = Load(workload.input_tokens, workload.output_tokens, per_instance)
    st = steady_state(inst, params, engine=engine, load=load, kv_tokens=dep.kv_tokens)
    seq_tokens = workload.input_tokens + workload.output_tokens
    reasons = list(dep.reasons)
    if dep.kv_tokens < seq_tokens and not any(r.kind in ("memory", "context") for r in reasons):
        reasons.append(
            Reason(
                kind="context",
                text=f"KV cache holds {dep.kv_tokens:,} tokens, fewer than one request's {seq_tokens:,}",
            )
        )
    engine_ok = not dep.engine_reasons
    rate_s = st.requests_per_ms * 1e3
    tokens_s = rate_s * workload.output_tokens
    usd_h = layout.gpus * profile.price.usd_per_gpu_hour.value
    total_tokens_s = tokens_s * layout.replicas
    tokens_per_usd = round(total_tokens_s * 3600 / usd_h, 1) if usd_h else 0.0
    spread = spread_for(profile, engine.name)
    band = interval(
        spread,
        ttft_ms=st.ttft_ms,
        tpot_ms=st.tpot_ms,
        output_tokens=workload.output_tokens,
        tokens_per_usd=tokens_per_usd,
    )
    return ServeEstimate(
        model=model.name,
        profile=profile.name,
        engine=engine.name,
        layout=layout,
        input_tokens=workload.input_tokens,
        output_tokens=workload.output_tokens,
        concurrency=workload.concurrency,
        dtype=workload.dtype,
        kv_cache_dtype=workload.kv_dtype_of(model),
        ttft_ms=round(st.ttft_ms, 3),
        tpot_ms=round(st.tpot_ms, 4),
        output_tokens_per_s=round(total_tokens_s, 2),
        requests_per_s=round(rate_s * layout.replicas, 4),
        output_tokens_per_s_per_instance=round(tokens_s, 2),
        requests_per_s_per_instance=round(rate_s, 4),
        gpus=layout.gpus,
        usd_per_hour=round(usd_h, 4),
        output_tokens_per_usd=tokens_per_usd,
        **band.fields(),
        fits=not reasons,
        reasons=[*dep.engine_reasons, *reasons],
        engine_ok=engine_ok,
        runnable=engine_ok and not reasons,
        kv_cache_tokens=dep.kv_tokens,
        max_concurrency=layout.replicas * (dep.kv_tokens // seq_tokens),
        max_num_seqs=engine.max_num_seqs,
        resident_per_instance=round(st.resident, 2),
        decode_batch=round(st.decode_seqs, 2),
        prefill_tokens_per_step=round(st.prefill_tokens_per_step, 1),
        queue_wait_ms=round(st.queue_wait_ms, 3),
        tp_fabric=dep.tp_fabric,
        crosses_nvlink_domain=dep.crosses_nvlink_domain,
        nodes=dep.nodes,  # type: ignore[arg-type]
        breakdown=_mean_breakdown(st.decode_step, st.mixed_step, st.prefill_step_fraction),
        provenance={
            **_provenance(params, engine, inst, dep, st.decode_seqs),
            "uncertainty": spread_provenance(spread, profile.name, engine=engine.name),
        },
        converged=st.converged,
        ttft_note=ttft_note(params, engine.name),
    )
