"""The report stage (`tpplan report`): a run directory's records as figures, tables and a Verdict.

    data.py             RunData: what the façade found in the run directory, and what is missing
    figures_sweep.py    all-reduce vs the cost model, per-rank busy fraction, drift       (measured)
    figures_step.py     step-time breakdown, measured and modelled side by side
    figures_search.py   tokens/USD against TPOT: trials, Pareto front, SLO, winner         (searched)
    figures_bench.py    predicted against measured on the real engine (`tpplan bench`)    (measured)
    figures_topology.py GPUs by NVLink domain, network ports, the plan's TP groups on them
    verdict.py          the Verdict and the failed cases in words; tables.py pandas CSV/Parquet
    render.py           Markdown + PNGs, or one HTML file with the PNGs inlined

Imports matplotlib and pandas: the façade imports this package only when a report is written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .. import io
from ..records import Report
from . import figures_bench, figures_search, figures_step, figures_sweep, figures_topology, tables, verdict
from .data import RunData, StudyData, layout_label
from .plot import png_bytes
from .render import Block, html_page, markdown

FORMATS = ("md", "html")
# In the report's order: the hot path first, then the search's answer and where it lands.
FIGURES = (
    figures_sweep.allreduce,
    figures_sweep.busy,
    figures_step.breakdown,
    figures_sweep.drift,
    figures_search.pareto,
    figures_bench.predicted_vs_measured,
    figures_topology.topology,
)


def write_report(
    data: RunData,
    out: Path,
    *,
    formats: tuple[str, ...] = ("md",),
    csv: bool = False,
    echo: Callable[[str], None] = print,
) -> Report:
    """Draw every figure the run's data allows, write the report(s) and, with `csv`, the sweep tables."""
    io.make_dir(out, "out")
    missing, files, drawn = list(data.missing), [], []
    for make in FIGURES:
        got = make(data)
        if isinstance(got, str):
            missing.append(got)
            # A PNG left by an earlier report of this run would sit beside a report that no longer draws it.
            (out / f"{make.__name__}.png").unlink(missing_ok=True)
            continue
        png = png_bytes(got.figure)
        if "md" in formats:  # HTML inlines the bytes; Markdown links the files
            path = out / got.data.file
            io.write_bytes(path, png)
            files.append(str(path))
        drawn.append((got.data, png))
        echo(f"  figure {got.data.name}: {got.data.title} ({sum(len(s.y) for s in got.data.series)} points)")
    frame = tables.sweep_frame(data.measurements) if data.measurements else None
    if csv:
        if frame is None:
            missing.append("no sweep results to export as CSV/Parquet")
        else:
            files += [str(p) for p in tables.write_tables(frame, out)]
    lines = verdict.verdict(data) + figures_bench.winner_lines(data.bench)
    blocks = _blocks(data, lines, missing, drawn, frame)
    title = f"tpplan report: {data.run_dir}"
    for fmt in formats:
        path = out / f"report.{fmt}"
        io.write_text(path, markdown(blocks) if fmt == "md" else html_page(blocks, title))
        files.append(str(path))
    return Report(
        run_dir=str(data.run_dir),
        out=str(out),
        files=files,
        figures=[d for d, _ in drawn],
        verdict=lines,
        missing=missing,
        notes=list(data.notes),
    )


def _blocks(data: RunData, lines: list[str], missing: list[str], drawn, frame) -> list[Block]:
    blocks = [
        Block("h1", f"tpplan report: {data.run_dir}"),
        Block("h2", "Verdict"),
        Block("ul", items=tuple(lines)),
    ]
    if missing:
        blocks += [Block("h2", "Missing from this run"), Block("ul", items=tuple(missing))]
    if data.failed:
        blocks += [
            Block("h2", f"Failed measurements ({len(data.failed)} of {len(data.measurements)})"),
            Block("ul", items=tuple(verdict.failed_lines(data))),
        ]
    for fig, png in drawn:
        blocks += [Block("h2", fig.title), Block("figure", figure=fig, png=png)]
    if frame is not None:
        headers, rows = tables.shown_rows(frame)
        blocks += [
            Block("h2", f"Sweep results ({data.sweep_file})"),
            Block("table", headers=tuple(headers), rows=tuple(tuple(r) for r in rows)),
            Block(
                "p",
                "Measured on this machine by `tpplan sweep`; `tpplan report RUN_DIR --csv` exports "
                "every column as sweep.csv and sweep.parquet.",
            ),
        ]
    if data.bench:
        headers, rows = figures_bench.table(data.bench)
        blocks += [
            Block("h2", f"Bench: predicted beside measured ({len(data.bench)} points)"),
            Block("table", headers=tuple(headers), rows=tuple(tuple(r) for r in rows)),
            Block(
                "p",
                "Measured by the engine's own client (`tpplan bench`); pred: tpplan's estimate of the point.",
            ),
        ]
    if data.plan is not None and data.plan.provenance:
        blocks += [
            Block("h2", "Where the winner's numbers come from"),
            Block("ul", items=tuple(f"{k}: {v}" for k, v in data.plan.provenance.items())),
        ]
    if data.notes:
        blocks += [Block("h2", "Notes"), Block("ul", items=tuple(data.notes))]
    return blocks


__all__ = ["FORMATS", "RunData", "StudyData", "layout_label", "write_report"]
