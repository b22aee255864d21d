"""`tpplan calibrate`: fit the cost model's parameters to measurements and write a calibrated profile."""

from __future__ import annotations

import click

from ..errors import ConfigError
from .common import echo_json, json_option, profile_option, table


@click.command()
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@profile_option()
@click.option("--out", type=click.Path(dir_okay=False), help="Write the calibrated profile here.")
@click.option(
    "--model",
    "model_map",
    multiple=True,
    metavar="NAME=SPEC",
    help="Model spec for a serving CSV's model_path (default: the bundled spec of that name).",
)
@click.option(
    "--sweep-model", metavar="SPEC", help="The model a sweep ran, if its results.jsonl does not say."
)
@click.option(
    "--dtype", type=click.Choice(["bf16", "fp16", "fp32", "fp8"]), help="Fit a sweep's lines of this dtype."
)
@click.option(
    "--allow-other-device", is_flag=True, help="Fit a bench measured on CPU to a GPU profile (or back)."
)
@json_option
def calibrate(
    sources: tuple[str, ...],
    profile: str,
    out: str | None,
    model_map: tuple[str, ...],
    sweep_model: str | None,
    dtype: str | None,
    allow_other_device: bool,
    as_json: bool,
) -> None:
    """Fit a profile's efficiency parameters to measurements and report the fit error per source.

    SOURCE is any of: a sweep's results.jsonl, the text output of nccl-tests all_reduce_perf, a
    `tpplan bench` bench.jsonl, or measured serving points (CSV columns backend, model_path, isl, osl, batch_size, tp_size, silicon_ttft_ms,
    silicon_tpot_ms). The written profile's fitted numbers say `basis: fitted` and what they came from.

    \b
    Examples:
      tpplan calibrate runs/sweep/results.jsonl --profile cpu-local --out cpu-calibrated.yaml
      tpplan calibrate all_reduce_perf.txt --profile dgx-a100-80g --out my-a100.yaml
      tpplan calibrate runs/tiny/bench/bench.jsonl --profile cpu-local --out cpu-cal.yaml
      tpplan calibrate serving.csv --profile dgx-h100 --model Qwen/Qwen3-32B=qwen3-32b --out h100.yaml --json
    """
    from .. import api

    models = {}
    for item in model_map:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            raise ConfigError(
                f"{item!r} is not NAME=SPEC", field="--model", expected="e.g. Qwen/Qwen3-32B=qwen3-32b"
            )
        models[name] = spec
    cal, _ = api.calibrate(
        list(sources),
        profile,
        out=out,
        models=models,
        sweep_model=sweep_model,
        dtype=dtype,
        allow_other_device=allow_other_device,
    )
    if as_json:
        echo_json(cal)
        return
    rows = [
        (
            f.source,
            f.kind,
            f.points,
            len(f.skipped),
            e.metric,
            e.points,
            "exact fit" if e.exact else f"{e.median_abs_pct:.1f}",
            "no held-out check" if e.exact else f"{e.p90_abs_pct:.1f}",
        )
        for f in cal.sources
        for e in f.errors
    ]
    click.echo(
        table(rows, ["source", "kind", "used", "skipped", "metric", "n", "median |err| %", "p90 |err| %"])
    )
    if any(e.exact for f in cal.sources for e in f.errors):
        click.echo(
            "exact fit: no more points than fitted parameters, so the fit goes through them and its error "
            "says nothing about accuracy; measure more points (sizes, TP degrees) for an error that does"
        )
    for f in cal.sources:
        for sp in f.spread:  # what every estimate's interval on this profile and engine now uses
            click.echo(f"  {sp.engine} estimates' 80% interval: {sp.describe()}")
        for s in f.skipped[:5]:
            click.echo(f"  skipped in {f.source}: {s}")
        if len(f.skipped) > 5:
            click.echo(f"  ... and {len(f.skipped) - 5} more skipped in {f.source}")
    click.echo("\nfitted:")
    for name, text in cal.parameters.items():
        click.echo(f"  {name} = {text}")
    click.echo(f"\nwrote {out}" if out else "\n(not written: pass --out FILE)")


COMMANDS = [calibrate]
