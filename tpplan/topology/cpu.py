"""This machine's CPUs as gloo ranks: the profile `tpplan detect` writes when no GPU answers.

Measured here: the cores this process may run on (os.sched_getaffinity, which honours cgroups
and taskset, unlike os.cpu_count) and the RAM /proc/meminfo reports. A CPU rank's compute and
memory bandwidth are not measured; they come from the bundled `cpu-local` profile, marked as
that profile marks them (assumed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..specs import HardwareProfile, Sourced, Topology
from ..specs.hardware import PriceSpec
from .profile import cite

# One rank per core keeps measured step times free of time-sharing; at most 8, the largest
# TP degree served on one node. At least 2, so a TP=2 all-reduce can be swept at all.
MIN_RANKS, MAX_RANKS = 2, 8
GIB_KIB = 1024 * 1024


@dataclass(frozen=True)
class Machine:
    host: str
    cores: int
    cores_source: str
    mem_total_kib: int | None
    mem_available_kib: int | None
    cpu_model: str | None

    @property
    def ranks(self) -> int:
        return max(MIN_RANKS, min(self.cores, MAX_RANKS))


def read_machine(host: str, proc: Path = Path("/proc")) -> Machine:
    if hasattr(os, "sched_getaffinity"):
        cores, how = len(os.sched_getaffinity(0)), "os.sched_getaffinity (CPUs this process may use)"
    else:
        cores, how = os.cpu_count() or 1, "os.cpu_count"
    mem = _meminfo(proc / "meminfo")
    return Machine(
        host, cores, how, mem.get("MemTotal"), mem.get("MemAvailable"), _cpu_model(proc / "cpuinfo")
    )


def _meminfo(path: Path) -> dict[str, int]:
    """'MemAvailable:   24232676 kB' → {'MemAvailable': 24232676} (kB in meminfo are KiB)."""
    out = {}
    try:
        for line in path.read_text().splitlines():
            key, _, rest = line.partition(":")
            if rest.strip().endswith("kB") and rest.split()[0].isdigit():
                out[key.strip()] = int(rest.split()[0])
    except OSError:
        pass
    return out


def _cpu_model(path: Path) -> str | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.partition(":")[2].split()) or None
    except OSError:
        pass
    return None


def cpu_profile(
    m: Machine,
    cpu_local: HardwareProfile,
    *,
    nodes: tuple[int, str],
    price: Sourced | None,
    date: str,
    topo: Topology,
) -> HardwareProfile:
    ranks = m.ranks
    src = f"bundled profile {cpu_local.name}"
    kib, what = (
        (m.mem_available_kib, "MemAvailable") if m.mem_available_kib else (m.mem_total_kib, "MemTotal")
    )
    memory = (
        Sourced(
            value=round(kib / GIB_KIB / ranks, 2),
            basis="derived",
            source=f"/proc/meminfo on {m.host}: {what} {kib / GIB_KIB:.1f} GiB / {ranks} ranks",
        )
        if kib
        else cite(cpu_local.gpu.memory_gib, src)
    )
    notes = [
        f"no GPU: {topo.errors[0]}" if topo.errors else "no GPU",
        f"{m.cores} usable CPU core(s) on {m.host} ({m.cores_source}); {ranks} gloo ranks "
        f"(one per core, {MIN_RANKS} to {MAX_RANKS})",
        f"nodes: {nodes[0]} ({nodes[1]})",
    ]
    if ranks > m.cores:
        notes.append(f"{ranks} ranks share {m.cores} core(s): step times include time-sharing")
    return HardwareProfile(
        name=f"detected-{m.host}-cpu",
        description=f"{ranks} gloo ranks on {m.host}: {m.cores} usable CPU core(s), "
        + (f"{kib / GIB_KIB:.1f} GiB RAM {what[3:].lower()}" if kib else "RAM unknown"),
        backend="gloo",
        gpu={
            "name": f"CPU rank (gloo) on {m.cpu_model or m.host}",
            "memory_gib": memory,
            "bf16_dense_tflops": cite(cpu_local.gpu.bf16_dense_tflops, src),
            "hbm_gbps": cite(cpu_local.gpu.hbm_gbps, src),
        },
        gpus_per_node=ranks,
        nodes=nodes[0],
        nvlink=None,
        pcie=cpu_local.pcie.model_copy(
            update={"per_gpu_unidir_gbps": cite(cpu_local.pcie.per_gpu_unidir_gbps, src)}
        ),
        inter_node=cpu_local.inter_node.model_copy(
            update={
                "per_gpu_gbps": cite(cpu_local.inter_node.per_gpu_gbps, src),
                "latency_us": cite(cpu_local.inter_node.latency_us, src),
            }
        )
        if cpu_local.inter_node
        else None,
        price=PriceSpec(usd_per_gpu_hour=price, date=date)
        if price
        else PriceSpec(
            usd_per_gpu_hour=cite(cpu_local.price.usd_per_gpu_hour, src), date=cpu_local.price.date
        ),
        notes=notes,
        topology=topo,
    )
