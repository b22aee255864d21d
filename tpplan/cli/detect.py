"""`tpplan detect`: this machine's topology as a hardware profile, shown as nvidia-smi shows it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from .common import echo_json, json_option, table


@click.command()
@click.option(
    "--out",
    default="detected-profile.yaml",
    show_default=True,
    metavar="PATH",
    help="Where to write the profile; '-' prints its YAML instead.",
)
@click.option(
    "--nodes",
    type=int,
    help="Nodes like this one the plan may use (default: SLURM_NNODES or SLURM_JOB_NUM_NODES, torchrun's "
    "GROUP_WORLD_SIZE or WORLD_SIZE/LOCAL_WORLD_SIZE, else 1).",
)
@click.option(
    "--price-usd-per-gpu-hour",
    "price",
    type=float,
    help="Price of one GPU for an hour (overrides the bundled one).",
)
@json_option
def detect(out: str, nodes: int | None, price: float | None, as_json: bool) -> None:
    """Read this machine's GPUs, NVLinks and network ports; write a hardware profile.

    Through NVML (nvidia-ml-py) and /sys: each GPU (name, UUID, memory, PCI bus id, NUMA node, CPU
    affinity, MIG mode), each NVLink and what it reaches (a GPU or an NVSwitch), the NVLink domains,
    the GPU x GPU matrix in the words of `nvidia-smi topo -m`, and the InfiniBand / RoCE ports with
    the GPUs nearest to each. TFLOP/s, HBM bandwidth and price come from the bundled profile of the
    same GPU, each with its source. With no GPU, no driver, or a failing NVML, it says why in one line
    and writes a CPU profile of this machine (gloo ranks) instead; the exit code is 0 either way.

    \b
    Examples:
      tpplan detect                                   writes detected-profile.yaml
      tpplan detect --nodes 2 --out dgx.yaml          two nodes like this one
      tpplan detect --price-usd-per-gpu-hour 2.10 --json | jq .profile.topology.domains
      tpplan detect --out - > profile.yaml
      tpplan candidates llama-3.1-70b --profile dgx.yaml --tp 16

    \b
    Testing without a GPU (source checkout): TPPLAN_FAKE_NVML=tests/fixtures/topology/dgx-a100.yaml
    makes NVML a fake of that machine; TPPLAN_SYSFS_ROOT=DIR reads DIR/sys instead of /sys.
    """
    from .. import api, io

    path = None if out == "-" else Path(out)
    found = api.detect(path, nodes=nodes, price_usd_per_gpu_hour=price)
    if not found.gpu_found:
        click.echo(_fallback_line(found), err=True)
    if as_json:
        echo_json({"out": str(path) if path else None, **found.model_dump(mode="json")})
    elif path is None:
        click.echo(io.to_yaml(found.profile, compact=True), nl=False)
    else:
        _show(found, path)


def _fallback_line(found) -> str:
    return f"{found.fallback_line()}; profiling its CPUs instead: {found.profile.description}"


def _show(found, path: Path) -> None:
    p, topo = found.profile, found.profile.topology
    if topo.gpus:
        click.echo(f"{len(topo.gpus)} x {p.gpu.name} on {topo.host} ({topo.source})\n")
        click.echo(
            table(
                [_gpu_row(g) for g in topo.gpus],
                ["gpu", "name", "MiB", "bus id", "NUMA", "CPU affinity", "MIG", "NVLinks"],
                "rllllllr",
            )
        )
        click.echo(f"\n{_nvlink_line(topo)}\n")
        click.echo("Connection matrix (compare with `nvidia-smi topo -m`):")
        click.echo(_matrix(topo))
    if topo.hcas:
        click.echo("\nInfiniBand / RoCE ports:")
        rows = [
            (h.label, h.state, h.rate, h.link_layer, h.kind or "-", _dash(h.numa_node), _nearest(h))
            for h in topo.hcas
        ]
        click.echo(
            table(rows, ["port", "state", "rate", "link layer", "kind", "NUMA", "nearest GPUs"], "lllllrl")
        )
    for w in found.warnings:
        click.echo(f"warning: {w}", err=True)
    for e in topo.errors if topo.gpus else topo.errors[1:]:
        click.echo(f"error: {e}", err=True)
    click.echo(f"\nProfile {p.name} -> {path}")
    for line in _summary(p):
        click.echo(f"  {line}")
    click.echo(f"Use it: tpplan candidates MODEL --profile {path}")


def _gpu_row(g) -> tuple:
    links = f"{g.nvlinks_active}/{g.nvlinks_total}" if g.nvlinks_total else "-"
    return (
        g.index,
        g.name or "?",
        _dash(g.memory_mib),
        g.pci_bus_id or "?",
        _dash(g.numa_node),
        g.cpu_affinity or "?",
        g.mig_mode or "n/a",
        links,
    )


def _nvlink_line(topo) -> str:
    sizes = topo.domain_sizes
    if max(sizes) == 1:
        return "NVLink: none; GPUs talk over PCIe."
    speeds = {k.speed_gbps for k in topo.nvlinks if k.active and k.speed_gbps}
    via = f"{len(topo.nvswitches)} NVSwitch(es)" if topo.nvswitches else "direct links (bridges)"
    rate = f", {min(speeds):g} GB/s per link per direction" if speeds else ""
    kinds = Counter((q.links, q.gbps) for q in topo.pairs)
    pairs = ", ".join(
        f"{c} x NV{links}" + (f" ({gbps:g} GB/s per direction)" if gbps else "")
        for (links, gbps), c in sorted(kinds.items(), reverse=True)
    )
    groups = " | ".join(_span(d) for d in topo.domains)
    return (
        f"NVLink: {via}{rate}; GPU pairs: {pairs}.\n"
        f"NVLink domains ({len(sizes)}, sizes {sorted(set(sizes), reverse=True)}): {groups}"
    )


def _matrix(topo) -> str:
    n = len(topo.gpus)
    head = [
        "",
        *(f"GPU{i}" for i in range(n)),
        *(h.label for h in topo.hcas),
        "CPU Affinity",
        "NUMA Affinity",
    ]
    rows = [
        [
            f"GPU{i}",
            *topo.matrix[i],
            *(h.gpu_levels[i] for h in topo.hcas),
            topo.gpus[i].cpu_affinity or "N/A",
            _dash(topo.gpus[i].numa_node, "N/A"),
        ]
        for i in range(n)
    ]
    return table(rows, head, "l" * len(head))


def _nearest(h) -> str:
    if not h.nearest_gpus:
        return "- (none in its NUMA node)" if h.gpu_levels else "-"
    return f"{','.join(map(str, h.nearest_gpus))} ({h.gpu_levels[h.nearest_gpus[0]]})"


def _summary(p) -> list[str]:
    g = p.gpu
    lines = [f"{p.gpus_per_node} x {g.name} per node, {p.nodes} node(s), backend {p.backend}"]
    for label, q, unit in (
        ("memory", g.memory_gib, "GiB"),
        ("bf16", g.bf16_dense_tflops, "TFLOP/s"),
        ("HBM", g.hbm_gbps, "GB/s"),
    ):
        lines.append(f"{label}: {q.value:g} {unit} [{q.basis}: {q.source}]")
    if p.nvlink:
        q = p.nvlink.per_gpu_unidir_gbps
        lines.append(
            f"NVLink domain {p.nvlink.domain_size_gpus} GPUs, {q.value:g} GB/s per GPU [{q.basis}: {q.source}]"
        )
    if p.inter_node:
        q = p.inter_node.per_gpu_gbps
        lines.append(f"between nodes: {p.inter_node.kind} {q.value:g} GB/s per GPU [{q.basis}: {q.source}]")
    q = p.price.usd_per_gpu_hour
    lines.append(f"price: ${q.value:g}/GPU-hour ({p.price.date}) [{q.basis}: {q.source}]")
    return lines


def _span(gpus: list[int]) -> str:
    return (
        f"{gpus[0]}-{gpus[-1]}"
        if len(gpus) > 1 and gpus == list(range(gpus[0], gpus[-1] + 1))
        else ",".join(map(str, gpus))
    )


def _dash(value, none: str = "-") -> str:
    return none if value is None else str(value)


COMMANDS = [detect]
