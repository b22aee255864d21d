"""Step-time breakdown per layout as stacked bars: the sweep's measured steps beside the cost model's.

Measured and modelled bars sit on separate axes (different models, machines and units of work: a
measured prefill step of the swept model on this machine; a modelled mean serving step of the
planned model on the plan's GPUs), so no bar mixes the two. On the modelled axis, estimates.json's
layouts and the plan are priced at their own workloads (the demo's: ISL 1024 and 64 in flight against the
search's ISL 2048 and 128), so each workload is a separate group, named in the legend, series and caption.
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


def _stack(
    ax, xs: list[float], labels: list[str], parts: list[dict[str, float]], hatches=None, headroom: float = 1.1
) -> None:
    """Stacked bars at `xs`, a colour per part (PART_COLOURS' order), the y-axis above the tallest."""
    bottom = [0.0] * len(xs)
    for name in [n for n in PART_COLOURS if any(p.get(n, 0.0) > 0 for p in parts)]:
        values = [p.get(name, 0.0) for p in parts]
        ax.bar(
            xs, values, bottom=bottom, color=PART_COLOURS[name], label=name, edgecolor="white", hatch=hatches
        )
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    slant = {"rotation": 30, "ha": "right", "rotation_mode": "anchor"} if len(labels) > 4 else {}
    ax.set_xticks(xs, labels, fontsize=8, **slant)
    ax.set_ylim(0, headroom * max(bottom, default=1.0) or 1.0)  # the tallest stack whole, and headroom
    ax.set_ylabel("time per step (ms)")
    ax.grid(True, axis="y", alpha=0.3)


def _drawn(source: str, parts: list[dict[str, float]], xs: list[float], group: str = "") -> list:
    """A series per part of `parts` (bars at xs), labelled with the group the bars belong to."""
    names = [n for n in PART_COLOURS if any(p.get(n, 0.0) > 0 for p in parts)]
    return [series(f"{source} {n}{group}", source, x=xs, y=[p.get(n, 0.0) for p in parts]) for n in names]


def workload(e: ServeEstimate, seqs: bool = False) -> str:
    """The serving workload an estimate was priced at (what its step depends on besides the layout)."""
    text = f"ISL {e.input_tokens}, OSL {e.output_tokens}, {e.concurrency} in flight"
    return text + (f", max_num_seqs {e.max_num_seqs}" if seqs else "")


Group = tuple[bool, list[tuple[str, ServeEstimate]]]  # (the plan's?, [(tick label, estimate)])


def _modelled(data: RunData) -> list[Group]:
    """estimates.json's estimates, a group per workload, then the plan's estimate on its own."""
    groups: dict[tuple[int, int, int, int], list[tuple[str, ServeEstimate]]] = {}
    for e in sorted(data.estimates, key=lambda e: (e.input_tokens, e.concurrency, e.layout.tp, e.layout.pp)):
        key = (e.input_tokens, e.output_tokens, e.concurrency, e.max_num_seqs)
        groups.setdefault(key, []).append((e.layout.label(), e))
    out: list[Group] = [(False, members) for members in groups.values()]
    if data.winner_estimate is not None:
        e = data.winner_estimate
        out.append((True, [("plan: " + e.layout.label(), e)]))
    return out


def _draw_modelled(ax, groups: list[Group]) -> tuple[list, list[str]]:
    """The cost model's bars, a gap and a dotted line between workloads, the plan's bar hatched.
    Returns the series and each group's name with its workload (max_num_seqs only when it differs)."""
    from matplotlib.patches import Patch

    seqs = len({e.max_num_seqs for _, g in groups for _, e in g}) > 1
    drawn, names, handles, x0 = [], [], [], 0.0
    xs_all, labels_all, parts_all, hatch_all = [], [], [], []
    for i, (plan, members) in enumerate(groups):
        xs = [x0 + j for j in range(len(members))]
        parts = [modelled_parts(e.breakdown) for _, e in members]
        named = f"{'plan (hatched)' if plan else 'estimates.json'} at {workload(members[0][1], seqs)}"
        drawn += _drawn("modelled", parts, xs, f" ({named})")
        names.append(named)
        shown = named.replace(" in flight, ", " in flight,\n")  # two lines: the legend stays narrow
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//" if plan else None, label=shown))
        xs_all += xs
        labels_all += [label for label, _ in members]
        parts_all += parts
        hatch_all += ["//" if plan else None] * len(members)
        x0 = xs[-1] + 1.7  # a bar's width of gap between workloads
        if i < len(groups) - 1:
            ax.axvline(xs[-1] + 0.85, color="grey", linestyle=":", linewidth=1)
    _stack(ax, xs_all, labels_all, parts_all, hatch_all, headroom=1.3)  # room for the workload legend
    ax.legend(handles=handles, fontsize=7, loc="upper right", title="workload priced", title_fontsize=7)
    return drawn, names


def breakdown(data: RunData) -> Drawn | str:
    measured = [m for m in data.ok if m.ranks]
    modelled = _modelled(data)
    if not measured and not modelled:
        return "no step breakdown: neither sweep measurements nor cost-model estimates (estimates.json, plan.yaml)"
    panels = [p for p in (measured, modelled) if p]
    fig, axes = new_figure(6 * len(panels), 4.6, ncols=len(panels))
    axes = axes if isinstance(axes, list) else [axes]
    drawn, reads, where = [], [], ""
    ax = iter(axes)
    if measured:
        a = next(ax)
        parts = [measured_parts(m) for m in measured]
        xs = list(range(len(measured)))
        _stack(a, xs, [layout_label(m) for m in measured], parts)
        drawn += _drawn("measured", parts, xs)
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
        got, names = _draw_modelled(a, modelled)
        drawn += got
        e0 = modelled[0][1][0][1]  # first group, first (label, estimate)
        a.set_xlabel(f"layout ({e0.model} on {e0.profile}, cost model)")
        a.set_title("Modelled (cost model): mean serving step = TPOT", fontsize=9)
        pairs = [(label, e) for _, g in modelled for label, e in g]
        top = max(pairs, key=lambda le: le[1].breakdown.allreduce_ms / max(le[1].breakdown.total_ms, 1e-9))
        b = top[1].breakdown
        reads.append(f"modelled: all-reduce peaks at {b.allreduce_ms / b.total_ms:.0%} of a step at {top[0]}")
        where = f": {'; '.join(names)}"
        if len(names) > 1:  # a step grows with prompt length and requests in flight
            where += " (different workloads, so one layout's bars under each differ)"
    # One key for the parts of both panels (a part has the same colour in each), under them.
    keyed: dict = {}
    for a in axes:
        for h, label in zip(*a.get_legend_handles_labels(), strict=True):
            keyed.setdefault(label, h)
    keys = [n for n in PART_COLOURS if n in keyed]
    fig.legend([keyed[n] for n in keys], keys, loc="outside lower center", ncols=len(keys), fontsize=8)
    caption = (
        "Where each step's milliseconds go, measured on this machine (left) and modelled for the plan's GPUs "
        f"(right{where}); {'; '.join(reads)}."
    )
    return Drawn(
        fig,
        figure_data(
            "breakdown",
            "Step-time breakdown per layout",
            caption=caption,
            x_label="layout (TP×PP×replicas, dtype)",
            y_label="time per step (ms)",
            drawn=drawn,
        ),
    )
