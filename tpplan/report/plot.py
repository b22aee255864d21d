"""Shared plotting pieces: an Agg figure, colours that mean the same thing in every figure, PNG bytes.

matplotlib is imported here, and this module only by the report package, which the façade imports
when `tpplan report` runs: `import tpplan` and `tpplan --help` never load it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # no display: PNGs only

from matplotlib.figure import Figure  # noqa: E402

from ..records import FigureData, Series  # noqa: E402

DPI = 110
# One colour per TP degree across all figures, so TP=2 is the same orange everywhere; grey is kept
# for infeasible and not-representative marks, so no TP degree gets it.
_TP_COLOURS = {
    1: "#1f77b4",
    2: "#ff7f0e",
    3: "#9467bd",
    4: "#2ca02c",
    6: "#8c564b",
    8: "#d62728",
    16: "#e377c2",
}
_OTHER_COLOURS = ["#17becf", "#bcbd22", "#393b79", "#637939"]
# The step's parts, in stacking order, with one colour each (measured and modelled bars share them).
PART_COLOURS = {
    "compute": "#4c72b0",
    "weight + KV reads": "#64b5cd",
    "all-reduce": "#dd8452",
    "P2P": "#55a868",
    "bubble": "#c44e52",
    "overhead": "#8c8c8c",
    "other wait": "#ccb974",
}


def tp_colour(tp: int) -> str:
    return _TP_COLOURS.get(tp) or _OTHER_COLOURS[tp % len(_OTHER_COLOURS)]


@dataclass
class Drawn:
    """A figure drawn from a run's records, and those records' numbers as it plotted them."""

    figure: Figure
    data: FigureData


def new_figure(width_in: float, height_in: float, *, ncols: int = 1):
    """A Figure on the Agg canvas (no pyplot state) and its axes (a list when ncols > 1)."""
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, (list(axes) if ncols > 1 else axes)


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def series(label: str, source: str, *, x, y) -> Series:
    return Series(label=label, source=source, x=[float(v) for v in x], y=[float(v) for v in y])  # type: ignore[arg-type]


def figure_data(
    name: str, title: str, *, caption: str, x_label: str, y_label: str, drawn: list[Series]
) -> FigureData:
    return FigureData(
        name=name,
        title=title,
        caption=caption,
        file=f"{name}.png",
        x_label=x_label,
        y_label=y_label,
        series=drawn,
    )


def human_bytes(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:g} {unit}" if n % size == 0 else f"{n / size:.1f} {unit}"
    return f"{n:g} B"
