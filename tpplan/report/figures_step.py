"""Step-time breakdown per layout as stacked bars: the sweep's measured steps beside the cost model's.

Measured and modelled bars sit on separate axes (different models, machines and units of work: a
measured prefill step of the swept model on this machine; a modelled mean serving step of the
planned model on the plan's GPUs), so no bar mixes the two.
"""

from __future__ import annotations

import statistics

from ..records import Measurement, ServeEstimate, StepBreakdown
from .data import RunData, layout_label
from .plot import PART_COLOURS, Drawn, figure_data, new_figure, series


def measured_parts(m: Measurement) -> dict[str, float]:
    """Median over ranks of each part of the measured step, ms (p2p includes the pipeline bubble)."""
    med = {
        k: statistics.median(getattr(r, k) for r in m.ranks)
        for k in ("compute_ms", "allreduce_ms", "p2p_ms", "wait_ms")
    }
    other = max(0.0, med["wait_ms"] - med["allreduce_ms"] - med["p2p_ms"])
    return {
        "compute": med["compute_ms"],
        "all-reduce": med["allreduce_ms"],
        "P2P": med["p2p_ms"],
        "other wait": other,
    }


def modelled_parts(b: StepBreakdown) -> dict[str, float]:
    """The cost model's mean step, ms, in the figure's parts."""
    return {
        "compute": b.compute_ms,
        "weight + KV reads": b.weight_reads_ms + b.kv_reads_ms,
        "all-reduce": b.allreduce_ms,
        "P2P": b.p2p_ms,
        "bubble": b.bubble_ms,
        "overhead": b.overhead_ms,
    }


def _stack(ax, labels: list[str], parts: list[dict[str, float]], source: str) -> list:
    drawn, bottom = [], [0.0] * len(labels)
    names = [n for n in PART_COLOURS if any(p.get(n, 0.0) > 0 for p in parts)]
    for name in names:
        values = [p.get(name, 0.0) for p in parts]
        ax.bar(
            range(len(labels)), values, bottom=bottom, color=PART_COLOURS[name], label=name, edgecolor="white"
        )
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        drawn.append(series(f"{source} {name}", source, range(len(labels)), values))
    ax.set_xticks(range(len(labels)), labels, fontsize=8, rotation=20 if len(labels) > 4 else 0)
    ax.set_ylabel("time per step (ms)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return drawn


def _modelled(data: RunData) -> list[tuple[str, ServeEstimate]]:
    out = [(e.layout.label(), e) for e in sorted(data.estimates, key=lambda e: (e.layout.tp, e.layout.pp))]
    if data.winner_estimate is not None:
        out.append(("plan: " + data.winner_estimate.layout.label(), data.winner_estimate))
    return out


def breakdown(data: RunData) -> Drawn | str:
    measured = [m for m in data.ok if m.ranks]
    modelled = _modelled(data)
    if not measured and not modelled:
        return "no step breakdown: neither sweep measurements nor cost-model estimates (estimates.json, plan.yaml)"
    panels = [p for p in (measured, modelled) if p]
    fig, axes = new_figure(5.5 * len(panels), 4.2, ncols=len(panels))
    axes = axes if isinstance(axes, list) else [axes]
    drawn, reads = [], []
    ax = iter(axes)
    if measured:
        a = next(ax)
        parts = [measured_parts(m) for m in measured]
        drawn += _stack(a, [layout_label(m) for m in measured], parts, "measured")
        a.set_xlabel(
            f"measured layout ({measured[0].model}, {measured[0].layers_measured} layers, this machine)"
        )
        a.set_title("Measured (sweep): median rank's step", fontsize=9)
        share = max(p["all-reduce"] / max(sum(p.values()), 1e-9) for p in parts)
        reads.append(
            f"measured: time inside all-reduces (waits for slower ranks included) is up to {share:.0%} of a step"
        )
    if modelled:
        a = next(ax)
        parts = [modelled_parts(e.breakdown) for _, e in modelled]
        drawn += _stack(a, [label for label, _ in modelled], parts, "modelled")
        e0 = modelled[0][1]
        a.set_xlabel(f"layout ({e0.model} on {e0.profile}, cost model)")
        a.set_title("Modelled (cost model): mean serving step = TPOT", fontsize=9)
        top = max(modelled, key=lambda le: le[1].breakdown.allreduce_ms / max(le[1].breakdown.total_ms, 1e-9))
        b = top[1].breakdown
        reads.append(f"modelled: all-reduce peaks at {b.allreduce_ms / b.total_ms:.0%} of a step at {top[0]}")
    caption = (
        "Where each step's milliseconds go, measured on this machine (left) and modelled for the plan's GPUs "
        f"(right); {'; '.join(reads)}."
    )
    return Drawn(
        fig,
        figure_data(
            "breakdown",
            "Step-time breakdown per layout",
            caption,
            "layout (TP×PP×replicas, dtype)",
            "time per step (ms)",
            drawn,
        ),
    )
