"""Figures from the sweep's measurements: all-reduce against the cost model, rank busy fractions, drift.

Each function takes the run's records and returns a Drawn figure, or a sentence saying why it cannot
be drawn (that sentence goes into the report's "Missing" section).
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from ..records import AllReduceEstimate, Measurement
from .data import RunData, layout_label
from .plot import Drawn, figure_data, human_bytes, new_figure, series, tp_colour

ZERO_DRIFT_FLOOR = 1e-9  # a bit-identical output (max_rel 0) is drawn here on the log axis


def allreduce(data: RunData) -> Drawn | str:
    """Latency p50 and busbw against message size: measured dots per TP, the cost model's line per TP."""
    measured = [m for m in data.ok if m.allreduce is not None and m.allreduce.group_size > 1]
    if not measured:
        return "no measured all-reduce: the sweep has no finished TP > 1 case (run `tpplan sweep MODEL --tp 1,2`)"
    fig, (ax_lat, ax_bw) = new_figure(10, 4, ncols=2)
    drawn = []
    by_tp: dict[int, list[Measurement]] = defaultdict(list)
    for m in measured:
        by_tp[m.allreduce.group_size].append(m)  # type: ignore[union-attr]
    model: dict[int, list[AllReduceEstimate]] = defaultdict(list)
    for e in data.allreduce_model:
        model[e.ranks].append(e)
    ratios = []
    for tp, ms in sorted(by_tp.items()):
        ms = sorted(ms, key=lambda m: m.allreduce.bytes)  # type: ignore[union-attr]
        x = [m.allreduce.bytes for m in ms]  # type: ignore[union-attr]
        lat = [m.allreduce.latency_us.p50 for m in ms]  # type: ignore[union-attr]
        bw = [m.allreduce.busbw_gbps for m in ms]  # type: ignore[union-attr]
        colour = tp_colour(tp)
        ax_lat.scatter(x, lat, color=colour, zorder=3, label=f"TP={tp} measured ({len(ms)})")
        ax_bw.scatter(x, bw, color=colour, zorder=3, label=f"TP={tp} measured")
        drawn += [
            series(f"TP={tp} measured latency p50", "measured", x=x, y=lat),
            series(f"TP={tp} measured busbw", "measured", x=x, y=bw),
        ]
        curve = sorted(model.get(tp, []), key=lambda e: e.bytes)
        if curve:
            cx = [e.bytes for e in curve]
            ax_lat.plot(cx, [e.latency_us for e in curve], "--", color=colour, label=f"TP={tp} cost model")
            ax_bw.plot(cx, [e.busbw_gbps for e in curve], "--", color=colour, label=f"TP={tp} cost model")
            drawn += [
                series(f"TP={tp} cost model latency", "modelled", x=cx, y=[e.latency_us for e in curve]),
                series(f"TP={tp} cost model busbw", "modelled", x=cx, y=[e.busbw_gbps for e in curve]),
            ]
            at = {e.bytes: e.latency_us for e in curve}
            ratios += [p / at[b] for b, p in zip(x, lat, strict=True) if at.get(b)]
    for ax in (ax_lat, ax_bw):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("message size (bytes, log2)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("all-reduce latency p50 (µs, log)")
    ax_bw.set_ylabel("bus bandwidth (GB/s)")
    where = f"profile {data.allreduce_profile}" if data.allreduce_profile else "no profile"
    fig.suptitle(
        f"All-reduce: measured ({measured[0].backend}, this machine) vs cost model ({where})", fontsize=10
    )
    sizes = sorted({m.allreduce.bytes for m in measured})  # type: ignore[union-attr]
    if ratios:
        verdict = f"measured p50 is {statistics.median(ratios):.2g}x the model's at the measured sizes"
    else:
        verdict = f"no model line ({where} has no price for these rank counts)"
    if any(p.basis == "assumed" for e in data.allreduce_model for p in e.provenance):
        # An assumed prior far from the dots is not a finding about the machine: say how to fit it.
        verdict += (
            f" (its link numbers are assumed, not measured; `tpplan calibrate RUN_DIR/sweep/results.jsonl "
            f"--profile {data.allreduce_profile}` fits them)"
        )
    caption = (
        f"Dots are this machine's all-reduces ({human_bytes(sizes[0])} to {human_bytes(sizes[-1])}), dashed lines "
        f"the cost model on {where}: {verdict}; busbw climbing with size means small messages are latency-bound."
    )
    return Drawn(
        fig,
        figure_data(
            "allreduce",
            "All-reduce latency and bus bandwidth",
            caption=caption,
            x_label="message size (bytes)",
            y_label="latency p50 (µs) | busbw (GB/s)",
            drawn=drawn,
        ),
    )


def busy_fractions(m: Measurement) -> list[float]:
    """Each rank's busy ms (the quantity the sweep's imbalance_pct is computed from: compute time, or
    CPU time when ranks oversubscribe cores) over the layout's step p50, in rank order. One denominator
    for every rank, so a TP group's (max − min) / max of these is exactly its imbalance."""
    step = m.step_ms.p50  # type: ignore[union-attr]
    return [r.busy_ms(m.representative) / step for r in sorted(m.ranks, key=lambda r: r.rank)]


def group_spread_pct(m: Measurement, fracs: list[float]) -> float | None:
    """Max over TP groups (replica, stage) of (max − min) / max of the plotted fractions, %."""
    groups: dict[tuple[int, int], list[float]] = defaultdict(list)
    for r, f in zip(sorted(m.ranks, key=lambda r: r.rank), fracs, strict=True):
        groups[(r.replica, r.stage)].append(f)
    spreads = [100 * (max(g) - min(g)) / max(g) for g in groups.values() if len(g) > 1 and max(g) > 0]
    return max(spreads) if spreads else None


def busy(data: RunData) -> Drawn | str:
    """A group of bars per measured layout, a bar per rank: its busy time / the layout's step time."""
    measured = [m for m in data.ok if m.ranks]
    if not measured:
        return "no per-rank timings: the sweep has no finished case"
    fig, ax = new_figure(min(11, max(6, 0.6 * sum(len(m.ranks) + 1 for m in measured) + 1)), 4)
    drawn, ticks, labels, x0, top = [], [], [], 0.0, 1.0
    worst: tuple[float, str] | None = None
    for m in measured:
        ranks = sorted(m.ranks, key=lambda r: r.rank)
        xs = [x0 + i for i in range(len(ranks))]
        fracs = busy_fractions(m)
        # Hatched: ranks oversubscribed CPU cores, so wall-clock compute includes waiting for a core;
        # their bars (and the sweep's imbalance) are CPU time instead.
        bars = ax.bar(
            xs,
            fracs,
            width=0.8,
            color=tp_colour(m.tp),
            edgecolor="black",
            linewidth=0.5,
            hatch=None if m.representative else "//",
        )
        for b, r in zip(bars, ranks, strict=True):
            ax.text(
                b.get_x() + b.get_width() / 2,
                0.02,
                f"r{r.rank}\n{r.heads}h",
                ha="center",
                va="bottom",
                fontsize=7,
                color="white",
            )
        label = layout_label(m)
        imb = group_spread_pct(m, fracs)  # = m.imbalance_pct: both are RankTiming.busy_ms
        basis = "compute" if m.representative else "CPU time"
        note = f"imbalance {imb:.1f}%\n({basis})" if imb is not None else "one rank"
        ax.text(sum(xs) / len(xs), max(fracs) + 0.03, note, ha="center", fontsize=8)
        top = max(top, max(fracs))
        ticks.append(sum(xs) / len(xs))
        labels.append(label)
        drawn.append(series(f"{label} busy fraction by rank", "measured", x=[r.rank for r in ranks], y=fracs))
        if imb is not None and (worst is None or imb > worst[0]):
            worst = (imb, label)
        x0 += len(ranks) + 1
    ax.set_xticks(ticks, labels, fontsize=8)
    ax.set_ylim(0, top + 0.2)  # room for the two-line imbalance label over the tallest bar
    ax.set_xlabel("measured layout (bars: ranks r0, r1, ... with their query heads)")
    ax.set_ylabel("busy fraction\n(busy ms / layout's step p50 ms)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title("Per-rank busy fraction (the rest of the step is waiting in collectives)", fontsize=10)
    read = (
        f"the largest gap is {worst[0]:.1f}% at {worst[1]}"
        if worst
        else "no TP group was measured, so there is no imbalance to see"
    )
    crowded = [layout_label(m) for m in measured if not m.representative]
    if crowded:
        read += (
            f"; hatched ({', '.join(crowded)}): ranks oversubscribed the CPU cores, so their wall-clock "
            "timings are not representative and their bars are CPU time per step"
        )
    caption = (
        "A bar is a rank's busy time (compute outside collectives; CPU time when ranks oversubscribe cores) "
        "over its layout's step p50; each imbalance label is (busiest − least busy) / busiest within a TP "
        "group of those bars, the sweep's imbalance_pct. Within a group, a shorter bar is a rank waiting at "
        f"every all-reduce for a busier one (the seed's 10-15% utilization delta between ranks); {read}."
    )
    return Drawn(
        fig,
        figure_data(
            "busy",
            "Per-rank busy fraction",
            caption=caption,
            x_label="layout and rank (TP, dtype)",
            y_label="busy fraction (busy ms / step p50 ms)",
            drawn=drawn,
        ),
    )


def drift(data: RunData) -> Drawn | str:
    """What allclose tests, per dtype and TP (log): max |Δ| / (atol + rtol·|ref|) against 1. Lines
    written before the sweep recorded that ratio fall back to max_rel against rtol."""
    measured = [m for m in data.ok if m.drift is not None and m.tp > 1]
    if not measured:
        return "no drift measured: the sweep has no finished TP > 1 case to compare with TP=1"
    measured.sort(key=lambda m: (m.dtype, m.tp, m.heads_mode))
    drifts = [m.drift for m in measured]
    ratio = all(d.tolerance_ratio is not None for d in drifts)  # type: ignore[union-attr]
    fig, ax = new_figure(max(5, 0.9 * len(measured) + 2), 4)
    xs = list(range(len(measured)))
    values = [d.tolerance_ratio if ratio else d.max_rel for d in drifts]  # type: ignore[union-attr]
    passed = [d.allclose for d in drifts]  # type: ignore[union-attr]
    for x, v, ok, m in zip(xs, values, passed, measured, strict=True):
        shown = max(v, ZERO_DRIFT_FLOOR)  # type: ignore[type-var]
        ax.scatter(
            [x],
            [shown],
            s=60,
            marker="o" if ok else "X",
            color=tp_colour(m.tp) if ok else "#d62728",
            edgecolor="black",
            zorder=3,
        )
        if shown == ZERO_DRIFT_FLOOR:
            ax.annotate(
                "0 (identical)",
                (x, shown),
                textcoords="offset points",
                xytext=(0, 8),
                ha="center",
                fontsize=7,
            )
    tols = sorted({(d.atol, d.rtol) for d in drifts})  # type: ignore[union-attr]
    tol_text = ", ".join(f"atol {a:g}, rtol {r:g}" for a, r in tols)
    if ratio:
        lines = [1.0]
        ax.axhline(
            1.0, color="#d62728", linestyle="--", label=f"allclose bound: atol + rtol·|ref| ({tol_text})"
        )
        ax.set_ylabel("max |Δ| / (atol + rtol·|ref|)\nlogits and hidden states (log)")
        y_label = "tolerance ratio: max |Δ| / (atol + rtol·|reference|), unitless"
        basis = (
            "Each point is the largest |Δ| over the last-token logits and final hidden states as a multiple "
            "of what torch.allclose allows that element (atol + rtol·|ref|): allclose holds at or under 1"
        )
    else:
        lines = sorted({r for _, r in tols})
        for rtol in lines:
            ax.axhline(
                rtol, color="#d62728", linestyle="--", label=f"rtol {rtol:g} (older results: max_rel vs rtol)"
            )
        ax.set_ylabel("max relative drift of last-token logits\n(|Δ| / max(|reference|, atol), log)")
        y_label = "max relative drift (|Δ| / max(|reference|, atol), unitless)"
        basis = (
            "These results were written before the sweep recorded tolerance_ratio, so points are max_rel "
            "against rtol alone, which overstates drift on near-zero logits (a new sweep records what "
            "allclose tests)"
        )
    ax.set_yscale("log")
    ax.set_xticks(xs, [layout_label(m) for m in measured], fontsize=8)
    ax.set_xlabel("dtype and TP degree (compared with TP=1, same weights and input)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Numerical drift of TP=N against TP=1", fontsize=10)
    failing = [layout_label(m) for m, ok in zip(measured, passed, strict=True) if not ok]
    read = f"fails allclose: {', '.join(failing)}" if failing else "every case passes allclose"
    worst = max(values)  # type: ignore[type-var]
    caption = (
        f"{basis}; red crosses fail torch.allclose({tol_text}); {read} "
        f"(worst {'ratio' if ratio else 'max_rel'} {worst:.2g})."
    )
    name = "tolerance ratio by case" if ratio else "max_rel by case"
    drawn = (
        [series(name, "measured", x=xs, y=values)]
        + [  # one rtol per dtype since tolerances follow it
            series(
                "allclose bound" if ratio else "rtol" if len(lines) == 1 else f"rtol {v:g}",
                "tolerance",
                x=[xs[0], xs[-1]],
                y=[v, v],
            )
            for v in (lines[:1] if ratio else lines)
        ]
    )
    return Drawn(
        fig,
        figure_data(
            "drift",
            "Numerical drift per dtype and TP",
            caption=caption,
            x_label="case (TP, dtype)",
            y_label=y_label,
            drawn=drawn,
        ),
    )
