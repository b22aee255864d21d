"""Report records (`tpplan report`): each figure with the numbers it plots, and what was written."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..specs.base import Frozen

# measured: this machine's sweep; modelled: the cost model (profile or fitted numbers);
# searched: the Optuna study's scored configurations; detected/profile: the hardware description.
SeriesSource = Literal["measured", "modelled", "searched", "detected", "profile", "tolerance"]


class Series(Frozen):
    """One plotted set of points: what it is, where its numbers came from, and the numbers."""

    label: str = Field(description="legend text")
    source: SeriesSource
    x: list[float] = Field(description="x values in the figure's x unit (categories: their positions)")
    y: list[float] = Field(description="y values in the figure's y unit")


class FigureData(Frozen):
    """A report figure: its file, axes with units, one-line caption, and every series it draws."""

    name: str = Field(description="file stem, e.g. allreduce")
    title: str
    caption: str = Field(description="one line: what to read from the figure")
    file: str = Field(description="the PNG, relative to the report directory")
    x_label: str = Field(description="with its unit")
    y_label: str = Field(description="with its unit")
    series: list[Series] = Field(description="the plotted data, as drawn")


class Report(Frozen):
    """`tpplan report`: what was read, what is missing, and the files written."""

    run_dir: str
    out: str = Field(description="report directory")
    files: list[str] = Field(description="files written (report, figures, tables)")
    figures: list[FigureData]
    verdict: list[str] = Field(description="the report's Verdict section, one sentence a line")
    missing: list[str] = Field(
        description="parts of a full run not found, each with the command that makes it"
    )
    notes: list[str] = Field(default_factory=list, description="lines skipped, studies chosen, and such")
