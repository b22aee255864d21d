"""Predicted against measured (`tpplan bench`): one point per layout and concurrency, TTFT and TPOT,
the y = x line and error bands; a table of the same points; and which layout won, measured and
predicted, for the Verdict."""

from __future__ import annotations

from ..records import BenchRecord
from .data import RunData
from .plot import Drawn, figure_data, new_figure, series, tp_colour

BANDS = (0.25, 0.5)  # predicted within ±25% and ±50% of measured
MARKERS = "osD^v<>p*h"


def ok_points(records: list[BenchRecord]) -> list[BenchRecord]:
    return [r for r in records if r.status == "ok" and r.measured is not None and r.predicted is not None]


def predicted_vs_measured(data: RunData) -> Drawn | str:
    pts = ok_points(data.bench)
    if not pts:
        why = "no bench in this run" if not data.bench else "no bench point both measured and predicted"
        return (
            f"{why}: `tpplan bench PLAN --out {data.run_dir}/bench` measures the plan's layouts on the engine"
        )
    fig, axes = new_figure(11, 5, ncols=2)
    drawn = []
    concs = sorted({r.concurrency for r in pts})
    for ax, metric, unit in ((axes[0], "ttft", "TTFT"), (axes[1], "tpot", "TPOT")):
        xs = [getattr(r.measured, f"{metric}_ms_mean") for r in pts]
        ys = [getattr(r.predicted, f"{metric}_ms") for r in pts]
        lo, hi = min(xs + ys) / 1.5, max(xs + ys) * 1.5
        line = [lo, hi]
        ax.plot(line, line, color="black", linewidth=1, label="y = x (exact)")
        drawn.append(series(f"{unit} y = x", "tolerance", x=line, y=line))
        for band, alpha in zip(BANDS, (0.18, 0.08), strict=True):
            ax.fill_between(
                line,
                [v * (1 - band) for v in line],
                [v * (1 + band) for v in line],
                color="#2ca02c",
                alpha=alpha,
                label=f"±{band:.0%}",
            )
        for r in pts:
            x, y = getattr(r.measured, f"{metric}_ms_mean"), getattr(r.predicted, f"{metric}_ms")
            ax.scatter(
                [x],
                [y],
                color=tp_colour(r.tp),
                marker=MARKERS[concs.index(r.concurrency) % len(MARKERS)],
                s=50,
                edgecolor="black",
                zorder=3,
            )
            drawn.append(series(f"{unit} TP={r.tp} PP={r.pp} C={r.concurrency}", "measured", x=[x], y=[y]))
        for tp in sorted({r.tp for r in pts}):
            ax.scatter([], [], color=tp_colour(tp), marker="s", label=f"TP={tp}")
        for c in concs:
            ax.scatter(
                [],
                [],
                color="white",
                edgecolor="black",
                marker=MARKERS[concs.index(c) % len(MARKERS)],
                label=f"C={c}",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(f"measured mean {unit} (ms, log)")
        ax.set_ylabel(f"predicted {unit} (ms, log)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
        ax.set_title(unit, fontsize=9)
    r0 = pts[0]
    basis = sorted({r.predicted.basis for r in pts})
    caption = (
        f"{len(pts)} points measured by {r0.engine} {r0.engine_version} on {r0.device} ({r0.isl} in, {r0.osl} out "
        f"per request); predicted by tpplan's cost model on profile {r0.profile} ({'/'.join(basis)} parameters). "
        "On the line: exact; in the bands: within 25% / 50%."
    )
    return Drawn(
        fig,
        figure_data(
            "predicted_vs_measured",
            "Predicted against measured (tpplan bench)",
            caption=caption,
            x_label="measured (ms)",
            y_label="predicted (ms)",
            drawn=drawn,
        ),
    )


def table(records: list[BenchRecord]) -> tuple[list[str], list[list[str]]]:
    headers = [
        "layout",
        "C",
        "status",
        "TTFT ms",
        "pred",
        "TPOT ms",
        "pred",
        "tok/s",
        "pred",
        "tok/USD",
        "reason",
    ]
    rows = []
    for r in records:
        m, p = r.measured, r.predicted
        rows.append([
            f"TP={r.tp} PP={r.pp}", str(r.concurrency), r.status,
            f"{m.ttft_ms_mean:.3g}" if m else "-", f"{p.ttft_ms:.3g}" if p else "-",
            f"{m.tpot_ms_mean:.3g}" if m else "-", f"{p.tpot_ms:.3g}" if p else "-",
            f"{m.output_tokens_per_s:,.0f}" if m else "-", f"{p.output_tokens_per_s:,.0f}" if p else "-",
            f"{m.output_tokens_per_usd:,.0f}" if m else "-", r.reason[:80],
        ])  # fmt: skip
    return headers, rows


def winner_lines(records: list[BenchRecord]) -> list[str]:
    """Per concurrency measured on 2+ layouts: is the measured best (tokens/USD) the predicted best?"""
    pts = ok_points(records)
    out = []
    for c in sorted({r.concurrency for r in pts}):
        at = [r for r in pts if r.concurrency == c]
        if len({(r.tp, r.pp) for r in at}) < 2:
            continue
        meas = max(at, key=lambda r: r.measured.output_tokens_per_usd)
        pred = max(at, key=lambda r: r.predicted.output_tokens_per_usd)
        same = (meas.tp, meas.pp) == (pred.tp, pred.pp)
        out.append(
            f"Bench at C={c}: the measured winner (tokens/USD) is TP={meas.tp} PP={meas.pp} "
            f"({meas.measured.output_tokens_per_usd:,.0f} tokens/USD measured); "
            + (
                "it is the predicted winner."
                if same
                else f"the predicted winner was TP={pred.tp} PP={pred.pp}."
            )
        )
    if not out and pts:
        out.append("Bench: fewer than 2 layouts measured at any one concurrency, so no winner to compare.")
    failed = [r for r in records if r.status != "ok"]
    if failed:
        out.append(
            f"Bench: {len(failed)} point(s) failed: "
            + "; ".join(f"{r.label} {r.status} ({r.reason[:60]})" for r in failed[:3])
        )
    return out
