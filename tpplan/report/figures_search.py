"""The search's figure: every configuration the study scored, tokens per USD against TPOT."""

from __future__ import annotations

import math

from ..records import ScoredConfig
from .data import RunData
from .plot import Drawn, figure_data, new_figure, series, tp_colour


def front_2d(results: list[ScoredConfig]) -> list[ScoredConfig]:
    """Feasible configurations no other beats on both tokens/USD and TPOT, by TPOT (the drawn front;
    the search's own pareto_front also weighs TTFT)."""
    front, best = [], -math.inf
    for r in sorted((r for r in results if r.feasible), key=lambda r: (r.tpot_ms, -r.output_tokens_per_usd)):
        if r.output_tokens_per_usd > best:
            front.append(r)
            best = r.output_tokens_per_usd
    return front


def pareto(data: RunData) -> Drawn | str:
    st = data.study
    if st is None or not st.results:
        return "no search in this run: the Pareto front needs the study `tpplan search` writes (study.db)"
    pts = [
        r for r in st.results if math.isfinite(r.tpot_ms) and r.tpot_ms > 0 and r.output_tokens_per_usd > 0
    ]
    if not pts:
        return f"study {st.name} has no configuration with a finite TPOT and tokens/USD"
    fig, ax = new_figure(8, 5)
    drawn = []
    bad = [r for r in pts if not r.feasible]
    if bad:
        ax.scatter(
            [r.tpot_ms for r in bad],
            [r.output_tokens_per_usd for r in bad],
            s=12,
            marker="x",
            color="#bbbbbb",
            alpha=0.6,
            label=f"infeasible ({len(bad)})",
        )
        drawn.append(
            series(
                "infeasible", "searched", x=[r.tpot_ms for r in bad], y=[r.output_tokens_per_usd for r in bad]
            )
        )
    good = [r for r in pts if r.feasible]
    for tp in sorted({r.tp for r in good}):
        rs = [r for r in good if r.tp == tp]
        ax.scatter(
            [r.tpot_ms for r in rs],
            [r.output_tokens_per_usd for r in rs],
            s=22,
            color=tp_colour(tp),
            alpha=0.8,
            label=f"feasible TP={tp} ({len(rs)})",
        )
        drawn.append(
            series(
                f"feasible TP={tp}",
                "searched",
                x=[r.tpot_ms for r in rs],
                y=[r.output_tokens_per_usd for r in rs],
            )
        )
    winner = data.plan.estimate if data.plan is not None and data.plan.estimate is not None else None
    # a disaggregated winner was scored beside the study (search/split.py), not in it: on the front too
    split = winner is not None and winner.disaggregated is not None
    front = front_2d([*pts, winner] if split else pts)
    if front:
        fx, fy = [r.tpot_ms for r in front], [r.output_tokens_per_usd for r in front]
        ax.step(fx, fy, where="post", color="black", linewidth=1.2, label="Pareto front (tokens/USD vs TPOT)")
        drawn.append(series("Pareto front", "searched", x=fx, y=fy))
    if st.slo_tpot_ms is not None:
        ax.axvline(st.slo_tpot_ms, color="#d62728", linestyle="--", label=f"TPOT SLO {st.slo_tpot_ms:g} ms")
        drawn.append(series("TPOT SLO", "tolerance", x=[st.slo_tpot_ms], y=[0.0]))
    slo_note = (  # a second title line: one line this long runs off the figure
        f"\nTTFT SLO {st.slo_ttft_ms:g} ms (not on these axes: its misses are among the infeasible)"
        if st.slo_ttft_ms is not None
        else ""
    )
    if winner is not None:
        ax.scatter(
            [winner.tpot_ms],
            [winner.output_tokens_per_usd],
            marker="*",
            s=320,
            color="gold",
            edgecolor="black",
            zorder=5,
            label="winner (plan.yaml)" + (", disaggregated" if split else ""),
        )
        ax.annotate(
            winner.label(),
            (winner.tpot_ms, winner.output_tokens_per_usd),
            textcoords="offset points",
            xytext=(10, 6),
            fontsize=8,
            fontweight="bold",
        )
        drawn.append(series("winner", "searched", x=[winner.tpot_ms], y=[winner.output_tokens_per_usd]))
    xs = [r.tpot_ms for r in pts]
    if max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("TPOT, mean time per output token (ms" + (", log)" if max(xs) / min(xs) > 20 else ")"))
    ax.set_ylabel("output tokens per USD (tokens/$)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(f"Search: {len(pts)} configurations of study {st.name}{slo_note}", fontsize=9)
    if winner is not None:
        more = [r for r in good if r.output_tokens_per_usd > winner.output_tokens_per_usd]
        if more:
            top = max(more, key=lambda r: r.output_tokens_per_usd)
            inside = winner.output_tokens_per_usd >= top.output_tokens_per_usd_low
            others = (
                f"{len(more)} of the study's feasible configurations earn more (up to "
                f"{top.output_tokens_per_usd / winner.output_tokens_per_usd:.3f}x), "
                + (
                    "the winner inside the estimates' uncertainty of the most: ties go to lower TTFT, then "
                    "TPOT, then fewer GPUs (the Verdict names the runner-up)"
                    if inside
                    else "beyond the estimates' uncertainty (the Verdict says why the winner stands)"
                )
            )
        else:
            others = "no configuration of the study that earns more meets the SLOs and fits"
        others += (
            "; disaggregated deployments the search weighed beside the study are not drawn, except a "
            "disaggregated winner (the search's notes name the best)"
        )
        read = (
            f"the star is the winner, {winner.output_tokens_per_usd:,.0f} tokens/USD at TPOT "
            f"{winner.tpot_ms:.1f} ms; {others}"
        )
    else:
        read = "no plan.yaml in the run, so no winner is marked"
    caption = f"Up and left is better; {read}."
    return Drawn(
        fig,
        figure_data(
            "pareto",
            "Tokens per USD against TPOT",
            caption=caption,
            x_label="TPOT (ms)",
            y_label="output tokens per USD (tokens/$)",
            drawn=drawn,
        ),
    )
