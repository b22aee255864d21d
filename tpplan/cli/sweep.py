"""`tpplan sweep`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from .common import SEED_RANGE, echo_json, json_option, profile_option, table


@click.command()
@click.argument("model", metavar="MODEL")
@profile_option(required=False)
@click.option(
    "--tp", "tp_text", metavar="LIST", help="TP degrees, e.g. 1,2,4 (default: 1,2,4,8 up to what fits here)."
)
@click.option(
    "--pp", "pp_text", metavar="LIST", default="1", show_default=True, help="Pipeline stages, e.g. 1,2."
)
@click.option(
    "--replicas",
    "replicas_text",
    metavar="LIST",
    default="1",
    show_default=True,
    help="Instances running at once on disjoint ranks, e.g. 1,2.",
)
@click.option(
    "--dtype", "dtype_text", metavar="LIST", help="fp32, bf16, fp16, comma-separated (default: the model's)."
)
@click.option(
    "--heads",
    "heads_text",
    metavar="FORMS",
    help="When heads do not divide by TP: uneven, padded or both (default: only forms engines accept, i.e. none).",
)
@click.option(
    "--tokens", type=int, default=128, show_default=True, help="Tokens per sequence in a step (prefill)."
)
@click.option(
    "--batch", type=int, default=2, show_default=True, help="Sequences per step (PP micro-batches: one each)."
)
@click.option(
    "--layers", type=int, help="Real-width layers to run; results scale by depth (default: what fits)."
)
@click.option("--warmup", type=int, default=5, show_default=True, help="Untimed steps first.")
@click.option("--iters", type=int, default=20, show_default=True, help="Timed steps.")
@click.option(
    "--timeout-s", type=float, default=60.0, show_default=True, help="Timeout of every collective, seconds."
)
@click.option(
    "--atol",
    type=float,
    help="allclose atol for TP=N vs TP=1 [default: bf16 0.0625, fp16 0.0078, fp32 1e-5].",
)
@click.option("--rtol", type=float, help="allclose rtol for TP=N vs TP=1 [default: as --atol].")
@click.option("--seed", type=SEED_RANGE, default=0, show_default=True, help="Seed of weights and input.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/sweep"),
    show_default=True,
    help="Directory for results.jsonl.",
)
@click.option("--resume", is_flag=True, help="Skip the cases already in OUT/results.jsonl.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the rendezvous listens on.")
@json_option
def sweep(
    model: str,
    profile: str | None,
    tp_text: str | None,
    pp_text: str,
    replicas_text: str,
    dtype_text: str | None,
    heads_text: str | None,
    tokens: int,
    batch: int,
    layers: int | None,
    warmup: int,
    iters: int,
    timeout_s: float,
    atol: float | None,
    rtol: float | None,
    seed: int,
    out: Path,
    resume: bool,
    host: str,
    as_json: bool,
) -> None:
    """Measure TP x PP x replica layouts with real sharded forward passes.

    Runs the model's layers at real widths over a real process group (NCCL on GPUs, gloo on CPU
    ranks), sharded as Megatron/vLLM shard them, and times steps and every all-reduce like
    nccl-tests. Also checks TP=N against TP=1 (allclose) and measures head imbalance. Each case is
    appended to OUT/results.jsonl as it finishes; faults (hang, dead rank, OOM) become results.
    Without --profile, a machine with no GPU runs cpu-local (CPU ranks over gloo).

    \b
    Examples:
      tpplan sweep sweeps/tiny.yaml --tp 1,2,4 --dtype fp32,bf16
      tpplan sweep minicpm-2b --tp 8 --heads uneven,padded --layers 1 --tokens 32
      tpplan sweep tiny --tp 2 --pp 1,2 --replicas 1,2 --out runs/pp --json
      tpplan sweep tiny --out runs/sweep --resume           # continue an interrupted sweep

    \b
    Across nodes, run the same command under torchrun on every node (rank 0 writes OUT):
      torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --max-restarts 0 \\
               --rdzv-endpoint HOST0:29500 -m tpplan sweep MODEL --tp 8 --out runs/x
    Only the cases whose ranks equal the torchrun world run there. A fault is recorded by rank 0
    and ends the group; run the same command with --resume to go on.
    """
    from .. import api, io
    from ..api.sweep import summarize
    from ..records.requests import SweepRequest

    lists = {
        "tp": tp_text,
        "pp": pp_text,
        "replicas": replicas_text,
        "dtypes": dtype_text,
        "heads": heads_text,
    }
    numbers = {"tokens": tokens, "batch": batch, "layers": layers, "warmup": warmup, "iters": iters}
    numbers |= {"timeout_s": timeout_s, "atol": atol, "rtol": rtol, "seed": seed}
    # A flag not given keeps the record's default (pp and replicas: [1]).
    given = {k: v for k, v in (lists | numbers).items() if v is not None}
    request = io.validate_request(SweepRequest, given)
    spec, found, layers_why = api.sweep(
        model, profile, request=request, out=out, resume=resume, host=host, progress=not as_json
    )
    if not found and os.environ.get("RANK", "0") != "0":
        return  # a torchrun rank other than 0: rank 0 reports
    if as_json:
        echo_json(found)
        return
    click.echo(
        f"{spec.name}: {found[0].layers_measured if found else '?'} layer(s) measured ({layers_why}); "
        f"{found[0].backend if found else ''} backend"
    )
    click.echo(table([_row(m) for m in found], HEADERS))
    for line in summarize(found):
        click.echo(line)
    click.echo(f"\n-> {out / 'results.jsonl'} (one JSON line per case; --json prints them)")


HEADERS = [
    "tp",
    "pp",
    "R",
    "dtype",
    "heads",
    "status",
    "heads/rank",
    "step p50 ms",
    "p99",
    "AR p50 us",
    "busbw GB/s",
    "AR share",
    "imbal %",
    "drift |d|",
    "allclose",
    "tok/s",
]


def _row(m) -> list:
    ar, d = m.allreduce, m.drift
    mark = "" if m.representative else "*"
    return [
        m.tp,
        m.pp,
        m.replicas,
        m.dtype,
        m.heads_mode,
        m.status + mark,
        m.heads_per_rank or "-",
        _f(m.step_ms.p50 if m.step_ms else None),
        _f(m.step_ms.p99 if m.step_ms else None),
        _f(ar.latency_us.p50 if ar else None),
        _f(ar.busbw_gbps if ar else None, 3),
        f"{ar.share_of_step:.0%}" if ar else "-",
        _f(m.imbalance_pct, 1),
        f"{d.max_abs:.2e}" if d else "-",
        ("yes" if d.allclose else "NO") if d else "-",
        _f(m.tokens_per_s, 0),
    ]


def _f(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


COMMANDS = [sweep]
