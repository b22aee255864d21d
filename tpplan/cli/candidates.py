"""`tpplan profiles` and `tpplan candidates`."""

from __future__ import annotations

import textwrap

import click

from .common import KV_AUTO_HELP, echo_json, engine_option, json_option, price_option, profile_option, table


@click.command()
@json_option
def profiles(as_json: bool) -> None:
    """List the bundled hardware profiles.

    \b
    Examples:
      tpplan profiles
      tpplan profiles --json | jq '.[].name'
    """
    from .. import api

    found = api.list_profiles()
    if as_json:
        echo_json([{"name": p.name, "file": str(path), **p.model_dump(mode="json")} for path, p in found])
        return
    rows = [
        (
            p.name,
            p.gpu.name,
            p.gpus_per_node,
            p.nodes,
            p.domain_size,
            p.inter_node.kind if p.inter_node else "-",
            f"{p.price.usd_per_gpu_hour.value:.2f}",
            p.price.date,
        )
        for _, p in found
    ]
    click.echo(
        table(
            rows,
            ["profile", "gpu", "gpus/node", "nodes", "nvlink domain", "network", "$/gpu-h", "price date"],
        )
    )
    click.echo("\nUse a name with --profile, or a path to your own YAML (`tpplan detect` writes one).")


@click.command()
@click.argument("model", metavar="MODEL")
@profile_option()
@click.option(
    "--gpus",
    type=int,
    help="GPU budget (default: all GPUs of the profile; more than a node means several nodes).",
)
@engine_option()
@click.option(
    "--max-model-len", type=int, help="Context length the KV cache must hold (default: the model's maximum)."
)
@click.option("--tp", "tp_text", metavar="LIST", help="Only these TP degrees, e.g. 4,8.")
@click.option("--pp", "pp_text", metavar="LIST", help="Only these PP degrees, e.g. 1,2.")
@click.option(
    "--dtype",
    type=click.Choice(["bf16", "fp16", "fp8"]),
    help="Weight dtype of the memory fit (default: the model's; fp8 only on GPUs with FP8 tensor cores). "
    "KV cache: auto. " + KV_AUTO_HELP,
)
@price_option()
@click.option("--full-budget", is_flag=True, help="Only layouts that use every GPU of the budget.")
@click.option("--valid-only", is_flag=True, help="Hide layouts that are not valid.")
@json_option
def candidates(
    model: str,
    profile: str,
    gpus: int | None,
    engine: str,
    max_model_len: int | None,
    tp_text: str | None,
    pp_text: str | None,
    dtype: str | None,
    price: float | None,
    full_budget: bool,
    valid_only: bool,
    as_json: bool,
) -> None:
    """Every TP x PP x replica layout for a GPU budget: legal for the engine? fits? why not?

    \b
    Examples:
      tpplan candidates llama-3.1-70b --profile dgx-h100
      tpplan candidates sweeps/minicpm-2b.yaml --profile dgx-a100-80g --tp 8 --engine megatron
      tpplan candidates config.json --profile dgx-h100 --gpus 16 --valid-only --json
      tpplan candidates llama-3.1-70b --profile dgx-h100 --dtype fp8 --price-usd-per-gpu-hour 2.10
    """
    from .. import api

    spec, prof, budget, found = api.list_candidates(
        model,
        profile,
        engine=engine,
        gpus=gpus,
        max_model_len=max_model_len,
        full_budget=full_budget,
        tp=tp_text,
        pp=pp_text,
        dtype=dtype,
        price_usd_per_gpu_hour=price,
    )
    judged = found
    if valid_only:
        found = [c for c in found if c.valid]
    if as_json:
        echo_json(found)
        return
    for note in spec.notes:
        click.echo(f"warning: {note}", err=True)
    click.echo(
        f"{spec.name} ({spec.num_attention_heads} heads, {spec.num_kv_heads} KV heads, {spec.num_layers} layers, "
        f"{spec.dtype} weights) on {budget} x {prof.gpu.name} [{prof.name}], {engine}; "
        + (f"NVLink domain {prof.domain_size} GPUs" if prof.nvlink and prof.domain_size > 1 else "no NVLink")
    )
    rows = [
        (
            f"{c.tp}{c.moe_label()}",
            c.pp,
            _replica_range(group),
            c.world_size,
            "yes" if c.valid else "no",
            c.engine_ok,
            c.fits,
            c.heads_per_rank,
            c.kv_heads_per_rank,
            c.layers_per_stage,
            f"{c.weights_gib_per_gpu:.1f}",
            f"{c.kv_cache_gib_per_gpu:.1f}",
            f"{c.world_size * prof.price.usd_per_gpu_hour.value:.2f}",
            c.tp_fabric + (" (crosses)" if c.crosses_nvlink_domain else ""),
            _why(c),
        )
        for group in _group_replicas(found)
        for c in [group[0]]
    ]
    headers = [
        "tp",
        "pp",
        "replicas",
        "gpus/inst",
        "valid",
        "engine",
        "fits",
        "heads/rank",
        "kv/rank",
        "layers/stage",
        "weights GiB",
        "kv GiB",
        "USD/h/inst",
        "tp link",
        "why not",
    ]
    click.echo(table(rows, headers))
    n_valid = sum(c.valid for c in found)
    click.echo(
        f"\n{n_valid} of {len(found)} layouts valid. GiB are per GPU at the {engine} memory fraction; "
        "--json gives every field and the full reasons."
    )
    q = prof.price.usd_per_gpu_hour
    click.echo(f"USD/h/inst: one instance's GPUs at ${q.value:g} per GPU-hour [{q.basis}: {q.source}]")
    if not any(c.valid for c in judged):
        from ..api.candidates import why_none_valid

        click.echo(why_none_valid(judged, budget))


def _group_replicas(found: list) -> list[list]:
    """Runs of layouts that differ only in replica count and share a verdict: one table row each."""
    groups: list[list] = []
    for c in found:
        prev = groups[-1][-1] if groups else None
        same = (prev.tp, prev.pp, prev.ep, prev.dp_attention, prev.valid, prev.reasons) if prev else None
        if same == (c.tp, c.pp, c.ep, c.dp_attention, c.valid, c.reasons):
            groups[-1].append(c)
        else:
            groups.append([c])
    return groups


def _replica_range(group: list) -> str:
    lo, hi = group[0].replicas, group[-1].replicas
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _why(c) -> str:
    """The first reason, without its source citation, short enough for a table cell."""
    if not c.reasons:
        return ""
    first = textwrap.shorten(c.reasons[0].text.split(";")[0], 64, placeholder="...")
    return first + (f" (+{len(c.reasons) - 1} more)" if len(c.reasons) > 1 else "")


COMMANDS = [profiles, candidates]
