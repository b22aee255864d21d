"""Time of one forward step of an engine instance: per-op rooflines, all-reduces, pipeline, overheads.

On a GPU with kernel tables (costmodel/kernels.py) each op takes the time its kernels were measured
to take at its actual shape: every GEMM at (tokens x its shard of the weight matrix), decode attention
at (sequences x context x KV heads on the rank), prefill attention at its length — so an m=8 GEMM or
a 4-sequence decode runs far below peak, as it does on the GPU. Without tables (CPU ranks) an op takes
max(FLOPs ÷ achieved FLOP/s, bytes ÷ achieved bandwidth) with one fitted fraction of each peak.
Either way its time is booked to `compute` or to `weight_reads` / `kv_reads` by which rated bound
(FLOPs ÷ peak or bytes ÷ peak bandwidth) is larger: a decode step at small batch is bound by reading
the weights and the KV cache, a prefill chunk by its FLOPs. To that:
the TP all-reduces (latency-bound at decode sizes, two per layer; with DP attention or expert
parallelism the collectives work.py lists, all-to-alls included), a per-layer kernel floor, and a
fixed per-step cost (scheduler, sampling, launches; CUDA graphs shrink it).

With PP stages, the batch is split into pp micro-batches that flow through the stages (vLLM's
virtual engines); a sequence gets its next token after one round:
    round = max(Σ_stages T_s + (pp−1)·t_p2p,  pp · max_s T_s)
and what the round spends beyond the path through the stages is the pipeline bubble.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from ..memory import stage_layer_ranges
from ..specs import ModelSpec
from .collectives import allreduce_time, alltoall_time, p2p_time_us
from .params import Params
from .work import Batch, Op, StageShape, stage_shape, stage_work

CATEGORIES = ("compute", "weight_reads", "kv_reads", "allreduce", "p2p", "overhead", "bubble")


@dataclass(frozen=True, eq=False)
class Instance:
    """One engine instance at a layout: everything its step time depends on besides the batch."""

    model: ModelSpec  # with `dtype` the served weight dtype
    tp: int
    layers_per_stage: tuple[int, ...]
    engine: str
    kv_dtype: str
    tp_fabric: str  # none | nvlink | pcie | network
    pp_fabric: str  # link between consecutive stages
    engine_kernels: bool = True  # engine all-reduce kernels inside an NVLink domain
    lm_head: bool = True
    ep: int = 1  # expert-parallel ranks among the tp (records.Layout.ep)
    dp: int = 1  # DP-attention groups (records.Layout.dp_attention)

    @property
    def pp(self) -> int:
        return len(self.layers_per_stage)

    @cached_property
    def shapes(self) -> tuple[StageShape, ...]:
        ranges = stage_layer_ranges(list(self.layers_per_stage))
        return tuple(
            stage_shape(
                self.model,
                self.tp,
                layers=r,
                last=i == len(ranges) - 1,
                kv_dtype=self.kv_dtype,
                lm_head=self.lm_head,
                ep=self.ep,
                dp=self.dp,
            )
            for i, r in enumerate(ranges)
        )

    @cached_property
    def same_as(self) -> tuple[int, ...]:
        """For each stage, the first stage of the same shape (most stages of an even split are alike:
        their step costs are computed once)."""
        return tuple(self.shapes.index(shape) for shape in self.shapes)


@dataclass
class StepCost:
    """Milliseconds of one step (one token for every decoding sequence), by where they go."""

    parts: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0.0))
    allreduce_count: int = 0
    allreduce_bytes: float = 0.0
    allreduce_us_each: float = 0.0
    allreduce_implementation: str = "none"

    @property
    def time_ms(self) -> float:
        return sum(self.parts.values())

    def add(self, other: StepCost) -> None:
        for k, v in other.parts.items():
            self.parts[k] += v


def _peaks_per_ms(p: Params, fraction: bool = True) -> tuple[float, float, float]:
    """(bf16 FLOP/ms, weight-dtype FLOP/ms, bytes/ms): achieved (times the fitted fractions) or rated."""
    gpu = p.profile.gpu
    f = p.gemm_fraction.value if fraction else 1.0
    bf16 = gpu.bf16_dense_tflops.value * 1e9 * f
    low = (gpu.fp8_dense_tflops.value if gpu.fp8_dense_tflops else gpu.bf16_dense_tflops.value) * 1e9 * f
    return bf16, low, gpu.hbm_gbps.value * 1e6 * (p.hbm_fraction.value if fraction else 1.0)


def _table_ms(op: Op, params: Params, inst: Instance, layers: int) -> float | None:
    """The op's time from the GPU's kernel tables, or None where no table covers it."""
    k = params.kernels
    if k is None:
        return None
    if op.name == "attention":
        seqs, ctx, _, kv_heads = op.shape
        per_layer = op.bytes / layers if layers else 0.0
        return layers * k.decode_attention_ms(
            per_layer, seqs, context=ctx, kv_heads=int(kv_heads), kv=inst.kv_dtype
        )
    if op.name == "prefill_attention":
        length, heads = op.shape
        return (
            layers * k.prefill_attention_ms(op.flops / layers, int(heads), length=length) if layers else 0.0
        )
    dtype = k.gemm_dtype(inst.model.dtype)
    if dtype is None or not op.gemms:
        return None
    return sum(count * k.gemm_ms(m, n, k=kk, dtype=dtype) for m, n, kk, count in op.gemms)


def stage_cost(inst: Instance, params: Params, *, stage: int, batch: Batch) -> StepCost:
    w = stage_work(inst.shapes[stage], batch)
    bf16, low, bw = _peaks_per_ms(params)
    rated = _peaks_per_ms(params, fraction=False)
    cost = StepCost()
    for op in w.ops:
        t_compute = op.flops / (low if op.low_precision else bf16)
        t_memory = op.bytes / bw
        t = _table_ms(op, params, inst, w.layers)
        if t is None:
            t = max(t_compute, t_memory)
        bound_by_compute = op.flops / (rated[1] if op.low_precision else rated[0]) >= op.bytes / rated[2]
        cost.parts[
            "compute" if bound_by_compute else "weight_reads" if op.reads == "weights" else "kv_reads"
        ] += t
    if w.allreduce_count:
        ar = allreduce_time(
            params,
            w.allreduce_bytes,
            ranks=inst.tp,
            fabric=inst.tp_fabric,
            engine_kernels=inst.engine_kernels,
        )
        cost.parts["allreduce"] = w.allreduce_count * ar.latency_us / 1e3
        cost.allreduce_count, cost.allreduce_bytes = w.allreduce_count, w.allreduce_bytes
        cost.allreduce_us_each, cost.allreduce_implementation = ar.latency_us, ar.implementation
    for c in w.collectives:  # DP attention / EP (work.py), booked with the TP all-reduces
        if c.kind == "alltoall":
            each_us = alltoall_time(params, c.bytes, ranks=c.ranks, fabric=inst.tp_fabric)[0]
        else:
            each_us = allreduce_time(
                params, c.bytes, ranks=c.ranks, fabric=inst.tp_fabric, engine_kernels=inst.engine_kernels
            ).latency_us
        cost.parts["allreduce"] += c.count * each_us / 1e3
    cost.parts["overhead"] = w.layers * params.overhead(inst.engine).per_layer_us.value / 1e3
    return cost


def _each_stage(inst: Instance, params: Params, batch: Batch) -> list[StepCost]:
    """stage_cost of every stage, computed once per distinct stage shape (the list shares them)."""
    costs: dict[int, StepCost] = {}
    for s in sorted(set(inst.same_as)):
        costs[s] = stage_cost(inst, params, stage=s, batch=batch)
    return [costs[s] for s in inst.same_as]


def step_cost(inst: Instance, params: Params, *, batch: Batch) -> StepCost:
    """One round: every decoding sequence advances one token.

    With PP the decodes are split into pp micro-batches; a prompt chunk rides whole in one of them
    (a request's prefill is not split across micro-batches). Each stage works through all pp
    micro-batches per round; the chunk's micro-batch must also cross every stage in turn:
        round = max(max_s busy_s, Σ_s T_s(chunk micro-batch) + (pp−1)·t_p2p)
    The breakdown is the stages' mean busy time by category, the P2P on the path, and the rest bubble.
    """
    over = params.overhead(inst.engine)
    step_ms = over.step_ms.value + batch.logits_rows * over.per_seq_us.value / 1e3
    pp = inst.pp
    if pp == 1:
        cost = stage_cost(inst, params, stage=0, batch=batch)
        cost.parts["overhead"] += step_ms
        return cost
    finishing = batch.logits_rows - batch.decode_seqs  # prompts that complete in this round
    plain = Batch(
        batch.decode_seqs / pp, batch.decode_context, 0.0, batch.prefill_context, batch.decode_seqs / pp
    )
    carrier = Batch(
        plain.decode_seqs,
        batch.decode_context,
        batch.prefill_tokens,
        batch.prefill_context,
        plain.decode_seqs + finishing,
    )
    carrying, others = _each_stage(inst, params, carrier), _each_stage(inst, params, plain)
    busy = [c.time_ms + (pp - 1) * o.time_ms for c, o in zip(carrying, others, strict=True)]
    act = inst.shapes[0].activation_dtype_bytes * inst.model.hidden_size
    p2p_ms = (pp - 1) * p2p_time_us(params, carrier.tokens * act, fabric=inst.pp_fabric) / 1e3
    round_ms = max(max(busy), sum(c.time_ms for c in carrying) + p2p_ms)
    total = StepCost()
    for c, o in zip(carrying, others, strict=True):
        for k in CATEGORIES:
            total.parts[k] += (c.parts[k] + (pp - 1) * o.parts[k]) / pp
    total.parts["p2p"] = p2p_ms
    total.parts["bubble"] = max(0.0, round_ms - sum(busy) / pp - p2p_ms)
    total.parts["overhead"] += step_ms
    busiest = max(carrying, key=lambda s: s.allreduce_count)
    total.allreduce_count = sum(s.allreduce_count for s in carrying)
    total.allreduce_bytes, total.allreduce_us_each = others[0].allreduce_bytes, others[0].allreduce_us_each
    total.allreduce_implementation = busiest.allreduce_implementation
    return total
