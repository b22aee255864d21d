"""`tpplan report`: a run directory → figures, tables and a Verdict people can read at a glance."""

from __future__ import annotations

from pathlib import Path

import click

from .common import echo_json, json_option


@click.command()
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Report directory [default: RUN_DIR/report].")
@click.option(
    "--format",
    "formats",
    type=click.Choice(["md", "html"]),
    multiple=True,
    help="md: report.md with the figures as PNGs beside it; html: one report.html with the figures "
    "inlined (give both to write both) [default: md].",
)
@click.option(
    "--csv", "csv", is_flag=True, help="Also export the sweep results as sweep.csv and sweep.parquet."
)
@click.option(
    "--profile",
    "sweep_profile",
    metavar="NAME|PATH",
    help="Profile the sweep ran on, for the all-reduce model line [default: cpu-local for a gloo sweep].",
)
@json_option
def report(
    run_dir: Path,
    out: Path | None,
    formats: tuple[str, ...],
    csv: bool,
    sweep_profile: str | None,
    as_json: bool,
) -> None:
    """Write a report of a run directory: all-reduce measured against the cost model, per-rank busy
    fractions, step-time breakdowns, drift against the tolerance, the search's tokens/USD against
    TPOT with the winner, and the topology with the plan's TP groups; a Verdict on top says which
    layout won and why. Parts the run lacks are named, with the command that makes them.

    RUN_DIR is what `tpplan demo` writes, a `tpplan sweep --out` directory, or a `tpplan search
    --out` directory.

    \b
    Examples:
      tpplan report runs/demo                            report.md + PNGs in runs/demo/report
      tpplan report runs/demo --format html --out /tmp/r one self-contained report.html
      tpplan report runs/sweep --csv                     also sweep.csv and sweep.parquet (pandas)
      tpplan report runs/demo --json                     files, figures, what is missing
    """
    from .. import api

    def progress(line: str) -> None:
        click.echo(line, err=as_json)

    done = api.report(
        run_dir, out=out, formats=formats or ("md",), csv=csv, sweep_profile=sweep_profile, echo=progress
    )
    if as_json:
        echo_json(done)
        return
    for line in done.missing:
        click.echo(f"  missing: {line}")
    for line in done.notes:
        click.echo(f"  note: {line}")
    for path in done.files:
        if path.endswith((".md", ".html", ".csv", ".parquet")):
            click.echo(f"  -> {path}")


COMMANDS = [report]
