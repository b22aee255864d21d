"""Topology stage: read this machine (NVML + sysfs) and describe it as a HardwareProfile.

    detect(bundled) -> Detection

nvml.py reads GPUs and NVLinks, sysfs.py the InfiniBand/RoCE ports and PCIe paths, graph.py
turns links into NVLink domains and the `nvidia-smi topo -m` matrix, profile.py and cpu.py
write the profile (a GPU node, or this machine's CPUs as gloo ranks when no GPU answers).

Inputs are parameters so tests run without a GPU: `nvml_module` (a module answering pynvml's names),
`sysfs_root`, `env`, `host`, `proc`. The test-only environment variables TPPLAN_FAKE_NVML
(a fixture for tests/fakes/nvml.py) and TPPLAN_SYSFS_ROOT (a fake /sys tree) do the same for
the CLI; without them the real NVML and `/` are read.
"""

from __future__ import annotations

import datetime
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import TpplanError
from ..records import Detection
from ..specs import GpuInfo, HardwareProfile, HcaPort, Topology
from . import cpu, graph, nvml, profile, sysfs


def detect(
    bundled: list[HardwareProfile],
    nodes: int | None = None,
    *,
    price_usd_per_gpu_hour: float | None = None,
    nvml_module: Any = None,
    sysfs_root: Path | None = None,
    env: Mapping[str, str] = os.environ,
    host: str | None = None,
    proc: Path = Path("/proc"),
    date: str | None = None,
) -> Detection:
    """The profile of this machine: its GPUs through NVML, or its CPUs when NVML cannot help."""
    host = host or socket.gethostname().split(".")[0] or "localhost"
    root = sysfs_root or sysfs.root_from_env(env)
    date = date or datetime.date.today().isoformat()
    node_count = profile.node_count(nodes, env)
    price = profile.user_price(price_usd_per_gpu_hour, date) if price_usd_per_gpu_hour is not None else None
    ports, sys_errors = sysfs.read_ports(root)
    try:
        reading = nvml.read(nvml_module if nvml_module is not None else nvml.load(env))
    except nvml.NvmlUnavailable as e:
        topo = Topology(
            host=host,
            source=f"sysfs under {root}; NVML unavailable",
            gpus=[],
            hcas=[_hca(p, []) for p in ports],
            errors=[str(e), *sys_errors],
        )
        cpu_local = next((p for p in bundled if p.name == "cpu-local"), None)
        if cpu_local is None:
            raise TpplanError("bundled profile cpu-local is missing; reinstall tpplan") from None
        found = cpu.cpu_profile(
            cpu.read_machine(host, proc), cpu_local, nodes=node_count, price=price, date=date, topo=topo
        )
        return Detection(profile=found, gpu_found=False, fallback_reason=str(e), gpus_present=gpu_signs(root))
    topo = _gpu_topology(host, root, reading, ports, sys_errors)
    found, warnings = profile.gpu_profile(topo, bundled, nodes=node_count, price=price, date=date)
    return Detection(profile=found, gpu_found=True, warnings=[*topo.warnings, *warnings])


def gpu_signs(root: Path) -> list[str]:
    """Device nodes, driver entries and PCI functions of NVIDIA GPUs: NVML failing while these exist is a
    broken driver, not a machine without GPUs."""
    signs = [str(p) for p in sorted((root / "dev").glob("nvidia[0-9]*"))[:2]]
    signs += [str(p) for p in (root / "dev" / "nvidiactl", root / "proc" / "driver" / "nvidia") if p.exists()]
    for dev in sorted((root / "sys" / "bus" / "pci" / "devices").glob("*"))[:512]:
        try:
            vendor, cls = (dev / "vendor").read_text().strip(), (dev / "class").read_text().strip()
        except OSError:
            continue
        if vendor == "0x10de" and cls.startswith(("0x0300", "0x0302")):  # display / 3D controller
            signs.append(f"PCI {dev.name} (NVIDIA)")
            break
    return signs


def _gpu_topology(
    host: str, root: Path, reading: nvml.NvmlReading, ports: list[sysfs.Port], sys_errors: list[str]
) -> Topology:
    gpus = [_numa_from_sysfs(root, g) for g in reading.gpus]
    paths = [sysfs.pci_path(root, nvml.sysfs_bdf(g.pci_bus_id)) if g.pci_bus_id else None for g in gpus]
    n, links = len(gpus), reading.links
    assumed = graph.like_peers(gpus, links)  # up links to unread ends, taken like the peers'
    counts = graph.nvlink_counts(n, links, assumed=assumed)
    switches = {
        k.remote_bus_id for k in links if k.active and k.remote_kind == "nvswitch" and k.remote_bus_id
    }
    return Topology(
        host=host,
        source=f"NVML (driver {reading.driver_version or 'unknown'}) and sysfs under {root}",
        driver_version=reading.driver_version,
        gpus=gpus,
        nvlinks=links,
        nvswitches=sorted(switches),
        domains=graph.domains(n, links, assumed=assumed),
        matrix=graph.matrix(reading.pcie, counts),
        pairs=graph.pairs(counts, links),
        hcas=[_hca(p, [_level(p, g, path) for g, path in zip(gpus, paths, strict=True)]) for p in ports],
        warnings=[
            *graph.degraded_links(gpus, links),
            *graph.unknown_warnings(
                gpus,
                links,
                unanswered=reading.unanswered,
                state_unknown=reading.state_unknown,
                remote_unknown=reading.remote_unknown,
            ),
        ],
        errors=[*reading.errors, *sys_errors],
    )


def _level(port: sysfs.Port, gpu: GpuInfo, gpu_path: tuple[str, ...] | None) -> str:
    return sysfs.pcie_level(port.pci_path, port.numa_node, b=gpu_path, numa_b=gpu.numa_node)


def _numa_from_sysfs(root: Path, g: GpuInfo) -> GpuInfo:
    """The NUMA node of the GPU's PCIe attach point, as `nvidia-smi topo -m` shows it ("NUMA
    Affinity"). NVML's nvmlDeviceGetNumaNodeId is the node of the GPU's own memory on coherent
    systems (Grace Hopper) and unsupported on x86; it stays the fallback."""
    numa = sysfs.numa_node(root, nvml.sysfs_bdf(g.pci_bus_id)) if g.pci_bus_id else None
    return g if numa is None else g.model_copy(update={"numa_node": numa})


def _hca(p: sysfs.Port, levels: list[str]) -> HcaPort:
    return HcaPort(
        device=p.device,
        port=p.port,
        state=p.state,
        rate=p.rate,
        rate_gbit_per_s=p.rate_gbit_per_s,
        link_layer=p.link_layer,
        kind=p.kind,
        pci_bus_id=p.pci_bus_id,
        numa_node=p.numa_node,
        gpu_levels=levels,
        nearest_gpus=graph.nearest(levels),
    )
