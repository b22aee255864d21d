"""Every rank's timed samples of one case → one `Measurement` (pure Python; rank 0 runs it).

A rank sample is a dict (JSON through the store): rank, replica, stage, tp_rank, heads, kv_heads,
`step_ms` [per timed iteration], `ar_ms` [per iteration: each all-reduce call], `p2p_ms`,
`cpu_ms` [per iteration], `alone_step_ms` (replica 0 running alone), `ar_bytes`, `gpu_util`.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from typing import Any

from ..engines import split
from ..records import AllReduceStats, Drift, Latency, Measurement, RankTiming, Stats
from .cases import Case, SweepSettings
from .timing import algbw_gbps, bus_bandwidth_gbps, percentile, summarize

Sample = dict[str, Any]

DRIFT_ADVICE = {
    "fp16": "use bf16 instead of fp16: the same 16 bits with fp32's exponent range, so large partial sums neither "
    "overflow nor lose as much to reordering",
    "accumulate": "accumulate the TP partial sums in fp32 (all-reduce in fp32, cast once after)",
    "scoring": "for scoring, embeddings or logit comparisons, run the final scoring head at TP=1: gather the "
    "hidden states to one rank first",
}


def advice(dtype: str) -> list[str]:
    """The seed's remedies for a layout whose TP=N output fails allclose against TP=1."""
    return ([DRIFT_ADVICE["fp16"]] if dtype == "fp16" else []) + [
        DRIFT_ADVICE["accumulate"],
        DRIFT_ADVICE["scoring"],
    ]


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _instance_steps(samples: list[Sample], field: str) -> dict[int, list[float]]:
    """Per replica: each iteration's step time = its slowest rank's (the step ends when all ranks are done)."""
    out: dict[int, list[float]] = {}
    for r in sorted({s["replica"] for s in samples}):
        rows = [s[field] for s in samples if s["replica"] == r and s.get(field)]
        if rows:
            out[r] = [max(col) for col in zip(*rows, strict=True)]
    return out


def _allreduce(samples: list[Sample], tp: int, step_p50_ms: float) -> AllReduceStats | None:
    """Per call, the shortest time any rank of the TP group spent in it: the rank that arrived last
    waited for nobody, so its time is the collective itself (stragglers show up as wait, not latency)."""
    if tp == 1:
        return None
    latencies_ms: list[float] = []
    count = 0
    groups: dict[tuple[int, int], list[Sample]] = {}
    for s in samples:
        groups.setdefault((s["replica"], s["stage"]), []).append(s)
    for members in groups.values():
        per_iter = zip(*(m["ar_ms"] for m in members), strict=True)  # iteration -> one list of calls per rank
        for calls in per_iter:
            count = max(count, len(calls[0]))
            latencies_ms += [min(c) for c in zip(*calls, strict=True)]
    if not latencies_ms:
        return None
    nbytes = max(s["ar_bytes"] for s in samples)
    p50_us, p99_us = percentile(latencies_ms, 50) * 1e3, percentile(latencies_ms, 99) * 1e3
    alg = algbw_gbps(nbytes, p50_us)
    return AllReduceStats(
        bytes=nbytes,
        group_size=tp,
        count_per_step=count,
        latency_us=Latency(p50=p50_us, p99=p99_us),
        algbw_gbps=alg,
        busbw_gbps=bus_bandwidth_gbps(alg, tp),
        share_of_step=count * p50_us / 1e3 / step_p50_ms,
    )


def _rank_timing(s: Sample) -> RankTiming:
    ar = [sum(calls) for calls in s["ar_ms"]]
    compute = [st - a - p for st, a, p in zip(s["step_ms"], ar, s["p2p_ms"], strict=True)]
    busy = [c / st for c, st in zip(compute, s["step_ms"], strict=True) if st > 0]
    return RankTiming(
        rank=s["rank"],
        replica=s["replica"],
        stage=s["stage"],
        tp_rank=s["tp_rank"],
        heads=s["heads"],
        kv_heads=s["kv_heads"],
        compute_ms=_med(compute),
        wait_ms=_med([a + p for a, p in zip(ar, s["p2p_ms"], strict=True)]),
        allreduce_ms=_med(ar),
        p2p_ms=_med(s["p2p_ms"]),
        busy_frac=_med(busy),
        cpu_ms=_med(s["cpu_ms"]) if s.get("cpu_ms") else None,
        gpu_util_pct=s.get("gpu_util"),
    )


def _imbalance(ranks: list[RankTiming], representative: bool) -> tuple[float | None, float | None]:
    """Max over TP groups of (slowest − fastest busy time) / slowest, and that spread in ms."""
    worst: tuple[float, float] | None = None
    groups: dict[tuple[int, int], list[float]] = {}
    for r in ranks:
        groups.setdefault((r.replica, r.stage), []).append(r.busy_ms(representative))
    for busy in groups.values():
        if len(busy) > 1 and max(busy) > 0:
            spread = max(busy) - min(busy)
            pct = 100 * spread / max(busy)
            if worst is None or pct > worst[0]:
                worst = (pct, spread)
    return worst if worst else (None, None)


def measurement(
    settings: SweepSettings,
    case: Case,
    *,
    samples: list[Sample],
    drift: dict | None,
    ranks_per_core: float,
    microbatches: int,
    notes: list[str],
) -> Measurement:
    samples = sorted(samples, key=lambda s: s["rank"])
    spec = settings.model
    depth = spec.num_layers / settings.layers
    steps = _instance_steps(samples, "step_ms")
    pooled = [t for r in steps for t in steps[r]]
    stats = summarize(pooled)
    tokens = settings.tokens * settings.batch
    per_instance = {r: tokens / (percentile(v, 50) * depth / 1e3) for r, v in steps.items()}
    alone = _instance_steps([s for s in samples if s["replica"] == 0], "alone_step_ms").get(0)
    alone_tps = tokens / (percentile(alone, 50) * depth / 1e3) if alone else None
    ranks = [_rank_timing(s) for s in samples]
    representative = ranks_per_core <= 1
    if not representative:
        notes = notes + [
            f"{ranks_per_core:g} ranks per CPU core: ranks wait for a core, so wall-clock timings are "
            "not representative; imbalance is computed from per-rank CPU time"
        ]
    imbalance, spread = _imbalance(ranks, representative)
    first = [s for s in samples if s["replica"] == 0 and s["stage"] == 0]
    total_heads = sum(s["heads"] for s in first)
    tps = sum(per_instance.values())
    drift_rec = None
    if drift is not None:
        atol, rtol = settings.tolerance(case.dtype)
        drift_rec = Drift(
            **drift,
            atol=atol,
            rtol=rtol,
            advice=[] if drift["allclose"] else advice(case.dtype),
        )
    return Measurement(
        **_identity(settings, case, ranks_per_core, microbatches),
        status="ok",
        step_ms=Stats(**stats),
        step_ms_full_depth=stats["p50"] * depth,
        allreduce=_allreduce(samples, case.tp, stats["p50"]),
        ranks=ranks,
        heads_per_rank=[s["heads"] for s in first],
        kv_heads_per_rank=[s["kv_heads"] for s in first],
        padding_heads=total_heads - spec.num_attention_heads if case.heads_mode == "padded" else 0,
        imbalance_pct=imbalance,
        busy_spread_ms=spread,
        drift=drift_rec,
        tokens_per_s=tps,
        tokens_per_s_alone=alone_tps,
        replica_scaling=tps / (case.replicas * alone_tps) if alone_tps else None,
        notes=notes,
    )


def with_padding_cost(padded: Measurement, uneven: Measurement) -> Measurement:
    """The padded form's cost against the uneven form of the same layout: extra busy time summed
    over ranks (the zero heads' work), in % — what padding spends to even out the ranks."""
    total = [sum(r.busy_ms(m.representative) for r in m.ranks) for m in (padded, uneven)]
    cost = 100 * (total[0] / total[1] - 1) if total[1] > 0 else None
    return padded.model_copy(update={"padding_cost_pct": cost})


def failure(
    settings: SweepSettings, case: Case, *, status: str, reason: str, ranks_per_core: float
) -> Measurement:
    """A case that ended in a fault (or was skipped): what it was and why, nothing measured."""
    h, tp = settings.model.num_attention_heads, case.tp
    heads = [-(-h // tp)] * tp if case.heads_mode == "padded" else split(h, tp)
    return Measurement(
        **_identity(settings, case, ranks_per_core, 1), status=status, reason=reason, heads_per_rank=heads
    )


def _identity(
    settings: SweepSettings, case: Case, ranks_per_core: float, microbatches: int
) -> dict[str, Any]:
    """The fields every Measurement of `case` has, measured or not."""
    return dict(
        key=case.key,
        tp=case.tp,
        pp=case.pp,
        replicas=case.replicas,
        model=settings.model.name,
        dtype=case.dtype,
        tokens=settings.tokens,
        batch=settings.batch,
        microbatches=microbatches,
        heads_mode=case.heads_mode,
        backend=settings.backend,
        layers_measured=settings.layers,
        layers_total=settings.model.num_layers,
        engines_accepting=case.engines_accepting,
        ranks_per_core=ranks_per_core,
        representative=ranks_per_core <= 1,
        warmup=settings.warmup,
        iters=settings.iters,
        measured_at=now(),
    )


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
