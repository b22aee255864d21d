"""`tpplan estimate allreduce|serve`."""

from __future__ import annotations

import re
from fractions import Fraction

import click

from ..errors import ConfigError, show_value
from .common import (
    KV_AUTO_HELP,
    echo_json,
    engine_option,
    json_option,
    positive_int,
    price_option,
    profile_option,
    table,
)

UNITS = {
    "": 1,
    "B": 1,
    "K": 10**3,
    "KB": 10**3,
    "M": 10**6,
    "MB": 10**6,
    "G": 10**9,
    "GB": 10**9,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
# One all-reduce message larger than a GPU's memory (192 GB on B200) cannot exist; 1 TiB is far past it.
MAX_MESSAGE_BYTES = 2**40


def parse_bytes(text: str) -> int:
    """'33554432', '32MiB', '4M', '1.5KiB' -> bytes (a whole number of them, at most 1 TiB)."""
    m = re.fullmatch(r"\s*(\d{1,20}(?:\.\d{1,20})?)\s*([A-Za-z]*)\s*", text)
    unit = m.group(2).upper() if m else None
    size = Fraction(m.group(1)) * UNITS[unit] if m and unit in UNITS else None  # exact: 1.5 stays 1.5
    if size is None or size < 1 or size > MAX_MESSAGE_BYTES or size.denominator != 1:
        why = (
            "is not a size"
            if size is None
            else "is larger than one all-reduce message can be"
            if size > MAX_MESSAGE_BYTES
            else "is less than one byte"
            if size < 1
            else "is not a whole number of bytes"
        )
        raise ConfigError(
            f"{show_value(text)} {why}",
            field="--bytes",
            expected=f"a whole byte count from 1 to {MAX_MESSAGE_BYTES} (1 TiB), such as 33554432, 32MiB or 4M",
        )
    return int(size)


@click.group()
def estimate() -> None:
    """Price collectives and serving with the cost model (no GPU needed).

    \b
    Examples:
      tpplan estimate allreduce --profile dgx-a100-80g --bytes 32MiB --ranks 8
      tpplan estimate serve llama-3.1-70b --profile dgx-h100 --tp 8 --isl 1024 --osl 256 --concurrency 32
    """


@estimate.command("allreduce")
@profile_option()
@click.option(
    "--bytes", "size", required=True, metavar="N", help="Message size: bytes, or with a unit (32MiB, 4M)."
)
@click.option(
    "--ranks", type=int, required=True, help="Ranks in the all-reduce (more than a node: several nodes)."
)
@json_option
def allreduce(profile: str, size: str, ranks: int, as_json: bool) -> None:
    """One all-reduce: latency, algbw, busbw (nccl-tests conventions) and the link it runs over.

    \b
    Examples:
      tpplan estimate allreduce --profile dgx-a100-80g --bytes 33554432 --ranks 8
      tpplan estimate allreduce --profile dgx-h100 --bytes 512KiB --ranks 16 --json
    """
    from .. import api

    positive_int("--ranks", ranks)
    est = api.estimate_allreduce(profile, nbytes=parse_bytes(size), ranks=ranks)
    if as_json:
        echo_json(est)
        return
    rows = [
        (
            est.bytes,
            est.ranks,
            est.fabric,
            est.implementation,
            est.algorithm,
            f"{est.latency_us:.1f}",
            f"{est.algbw_gbps:.2f}",
            f"{est.busbw_gbps:.2f}",
        )
    ]
    click.echo(
        table(
            rows,
            [
                "bytes",
                "ranks",
                "fabric",
                "implementation",
                "algorithm",
                "latency us",
                "algbw GB/s",
                "busbw GB/s",
            ],
        )
    )
    for p in est.provenance:
        click.echo(f"  from: {p}")


@estimate.command("serve")
@click.argument("model", metavar="MODEL")
@profile_option()
@click.option("--tp", type=int, required=True, help="Tensor-parallel degree.")
@click.option("--pp", type=int, default=1, show_default=True, help="Pipeline stages.")
@click.option(
    "--replicas", type=int, default=1, show_default=True, help="Independent instances sharing the load."
)
@click.option("--isl", type=int, required=True, help="Input (prompt) tokens per request.")
@click.option("--osl", type=int, required=True, help="Output tokens per request.")
@click.option(
    "--concurrency", type=int, required=True, help="Requests in flight across all replicas (closed loop)."
)
@click.option(
    "--dtype",
    type=click.Choice(["bf16", "fp16", "fp8"]),
    help="Weight / compute dtype (default: the model spec's, bf16 for an fp32 spec).",
)
@click.option(
    "--kv-cache-dtype",
    type=click.Choice(["auto", "bf16", "fp16", "fp8"]),
    default="auto",
    show_default=True,
    help="KV-cache dtype. " + KV_AUTO_HELP,
)
@click.option("--max-model-len", type=int, help="Context length one sequence must fit (default: ISL + OSL).")
@price_option()
@engine_option(("vllm", "sglang"))
@json_option
def serve(
    model: str,
    profile: str,
    tp: int,
    pp: int,
    replicas: int,
    isl: int,
    osl: int,
    concurrency: int,
    dtype: str | None,
    kv_cache_dtype: str,
    max_model_len: int | None,
    price: float | None,
    engine: str,
    as_json: bool,
) -> None:
    """TTFT, TPOT, throughput and tokens per dollar at a closed-loop concurrency.

    Numbers as `vllm bench serve --max-concurrency C` reports them: C clients each keep one request of
    ISL prompt and OSL output tokens in flight, split evenly over the replicas.

    \b
    Examples:
      tpplan estimate serve llama-3.1-70b --profile dgx-h100 --tp 8 --isl 1024 --osl 256 --concurrency 64
      tpplan estimate serve mixtral-8x7b --profile dgx-h100 --tp 4 --replicas 2 --isl 2048 --osl 512 --concurrency 32
      tpplan estimate serve llama-3.1-70b --profile dgx-h100 --tp 8 --isl 1024 --osl 256 --concurrency 64 \\
          --max-model-len 32768 --price-usd-per-gpu-hour 2.10
      tpplan estimate serve deepseek-v3 --profile dgx-h100 --tp 8 --pp 2 --dtype fp8 --isl 1024 --osl 1024 --concurrency 64 --json
    """
    from .. import api, io
    from ..records import Layout
    from ..specs import Workload

    for name, v in (
        ("--tp", tp),
        ("--pp", pp),
        ("--replicas", replicas),
        ("--isl", isl),
        ("--osl", osl),
        ("--concurrency", concurrency),
    ):
        positive_int(name, v)
    layout = io.validate(Layout, {"tp": tp, "pp": pp, "replicas": replicas}, file="command line")
    spec = api.load_model(model)
    # The model's own dtype, as `tpplan sweep` does: DeepSeek-V3 ships fp8 and does not fit in bf16.
    dtype = dtype or (spec.dtype if spec.dtype != "fp32" else "bf16")
    workload = io.validate(
        Workload,
        {
            "input_tokens": isl,
            "output_tokens": osl,
            "concurrency": concurrency,
            "dtype": dtype,
            "kv_cache_dtype": kv_cache_dtype,
        },
        file="command line",
    )
    est = api.estimate_serve(
        spec,
        profile,
        layout=layout,
        workload=workload,
        engine=engine,
        max_model_len=max_model_len,
        price_usd_per_gpu_hour=price,
    )
    if as_json:
        echo_json(est)
        return
    where = f"TP over {est.tp_fabric}" + (", crosses the NVLink domain" if est.crosses_nvlink_domain else "")
    if est.nodes > 1:
        where += f"; {est.nodes} nodes"
    click.echo(
        f"{est.model} on {est.profile}, {engine}, TP={tp} PP={pp} x{replicas} ({est.gpus} GPUs, {where}); "
        f"ISL {isl}, OSL {osl}, concurrency {concurrency}, {dtype}"
    )
    if not est.engine_ok:
        click.echo(f"{engine} refuses TP={tp} PP={pp}: " + "; ".join(r.uncited() for r in est.engine_reasons))
    memory = [r for r in est.reasons if r.kind != "engine"]
    if memory:
        click.echo("does not fit: " + "; ".join(r.uncited() for r in memory))
    if not est.runnable:
        click.echo(
            "no serving numbers: this deployment cannot start, so TTFT, TPOT and tokens/USD would not be "
            "achievable (--json keeps what the model computes, marked runnable: false)"
        )
        click.echo(f"memory: {est.provenance['kv_cache_tokens']}")
        return
    rows = [
        (
            "TTFT",
            f"{est.ttft_ms:,.1f} ms",
            f"mean time to first token; {est.ttft_ms_low:,.0f}-{est.ttft_ms_high:,.0f} ms",
        ),
        (
            "TPOT",
            f"{est.tpot_ms:.2f} ms",
            f"mean time per output token; {est.tpot_ms_low:.2f}-{est.tpot_ms_high:.2f} ms",
        ),
        (
            "output tokens/s",
            f"{est.output_tokens_per_s:,.0f}",
            f"{est.output_tokens_per_s_per_instance:,.0f} per instance",
        ),
        ("requests/s", f"{est.requests_per_s:.3f}", f"{est.requests_per_s_per_instance:.3f} per instance"),
        ("USD/hour", f"{est.usd_per_hour:.2f}", f"{est.gpus} GPUs"),
        (
            "output tokens/USD",
            f"{est.output_tokens_per_usd:,.0f}",
            f"{est.output_tokens_per_usd_low:,.0f}-{est.output_tokens_per_usd_high:,.0f}",
        ),
        (
            "KV cache",
            f"{est.kv_cache_tokens:,} tokens",
            f"per instance; max concurrency {est.max_concurrency:,}",
        ),
        (
            "in engine",
            f"{est.resident_per_instance:.1f}",
            f"per instance; {est.decode_batch:.1f} decoding, "
            f"{est.prefill_tokens_per_step:.0f} prompt tokens/step, wait {est.queue_wait_ms:.0f} ms",
        ),
    ]
    click.echo(table(rows, ["", "value", "note"], align="lrl"))
    click.echo(f"ranges: {est.provenance['uncertainty'].value}")
    click.echo(f"note: {est.ttft_note}")
    b = est.breakdown
    parts = [
        ("compute", b.compute_ms),
        ("weight reads", b.weight_reads_ms),
        ("KV reads", b.kv_reads_ms),
        ("all-reduce", b.allreduce_ms),
        ("P2P", b.p2p_ms),
        ("overhead", b.overhead_ms),
        ("bubble", b.bubble_ms),
    ]
    click.echo("\nmean step (= TPOT):")
    click.echo(
        table([(n, f"{v:.3f}", f"{100 * v / b.total_ms:.0f}%") for n, v in parts], ["", "ms", "share"], "lrr")
    )
    click.echo(
        f"all-reduce: {b.allreduce_count} per step x {b.allreduce_us_each:.1f} us ({b.allreduce_implementation}, "
        f"{b.allreduce_bytes / 1024:.0f} KiB each)"
    )
    click.echo("\nfrom: " + "\n      ".join(f"{k} = {v}" for k, v in est.provenance.items()))


COMMANDS = [estimate]
