"""InfiniBand / RoCE ports and PCIe placement from sysfs.

The root is a parameter (default `/`; the test-only TPPLAN_SYSFS_ROOT points it at a fake
tree). What is read, as the kernel writes it:

    /sys/class/infiniband/mlx5_0            -> ../../devices/pci0000:00/.../0000:0c:00.0/infiniband/mlx5_0
    /sys/class/infiniband/mlx5_0/device     -> ../../../0000:0c:00.0
    /sys/class/infiniband/mlx5_0/ports/1/rate        "200 Gb/sec (4X HDR)"
    /sys/class/infiniband/mlx5_0/ports/1/state       "4: ACTIVE"
    /sys/class/infiniband/mlx5_0/ports/1/link_layer  "InfiniBand" | "Ethernet"
    /sys/bus/pci/devices/0000:07:00.0       -> ../../../devices/pci0000:00/.../0000:07:00.0 (a GPU)
    /sys/bus/pci/devices/0000:07:00.0/numa_node      "3" (-1 when the platform does not say)

A device's PCI path (host bridge, root port, switch ports, device) gives its PCIe distance
to another device in nvidia-smi's words; see `pcie_level`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SYSFS_ENV = "TPPLAN_SYSFS_ROOT"

# "200 Gb/sec (4X HDR)": rate, lanes, speed name. Ethernet ports write the same form.
RATE = re.compile(r"^\s*([\d.]+)\s*Gb/sec(?:\s*\((\d+)X\s*([A-Z]+)\))?")
# InfiniBand speed names that are fabric kinds of a profile (HardwareProfile.inter_node.kind).
IB_KINDS = {"HDR": "ib-hdr", "NDR": "ib-ndr", "XDR": "ib-xdr"}


def root_from_env(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get(SYSFS_ENV) or "/")


@dataclass(frozen=True)
class Port:
    device: str
    port: int
    state: str
    rate: str
    rate_gbit_per_s: float
    link_layer: str
    kind: str | None
    pci_bus_id: str | None
    numa_node: int | None
    pci_path: tuple[str, ...] | None


def read_ports(root: Path) -> tuple[list[Port], list[str]]:
    """Every port of every adapter under /sys/class/infiniband, and what could not be read."""
    base = root / "sys" / "class" / "infiniband"
    if not base.is_dir():
        return [], []
    ports, errors = [], []
    for dev in sorted(base.iterdir(), key=lambda p: _natural(p.name)):
        device = dev / "device"
        bdf = device.resolve().name if device.exists() else None
        path = pci_path(root, bdf) if bdf else None
        numa = _numa(device / "numa_node")
        for p in sorted((dev / "ports").glob("*"), key=lambda p: _natural(p.name)):
            try:
                rate, state, layer = (_read(p / f) for f in ("rate", "state", "link_layer"))
            except OSError as e:
                errors.append(f"{dev.name} port {p.name}: cannot read {e.filename} ({e.strerror})")
                continue
            m = RATE.match(rate)
            if not m:
                errors.append(
                    f"{dev.name} port {p.name}: rate {rate!r} is not of the form '200 Gb/sec (4X HDR)'"
                )
                continue
            kind = "roce" if layer == "Ethernet" else IB_KINDS.get(m.group(3) or "")
            ports.append(
                Port(
                    dev.name,
                    int(p.name),
                    state.split(":", 1)[-1].strip(),
                    rate,
                    float(m.group(1)),
                    layer,
                    kind,
                    bdf,
                    numa,
                    path,
                )
            )
    return ports, errors


def pci_path(root: Path, bdf: str) -> tuple[str, ...] | None:
    """('pci0000:00', '0000:00:01.1', ..., '0000:07:00.0'): the device and its bridges, host bridge first."""
    link = root / "sys" / "bus" / "pci" / "devices" / bdf
    if not link.exists():
        return None
    try:
        rel = link.resolve().relative_to((root / "sys" / "devices").resolve())
    except ValueError:
        return None
    return rel.parts


def numa_node(root: Path, bdf: str) -> int | None:
    return _numa(root / "sys" / "bus" / "pci" / "devices" / bdf / "numa_node")


def pcie_level(
    a: tuple[str, ...] | None, numa_a: int | None, *, b: tuple[str, ...] | None, numa_b: int | None
) -> str:
    """nvidia-smi's word for the PCIe path between two devices, from their sysfs PCI paths.

    Different host bridges: NODE within one NUMA node, else SYS. One host bridge, different root
    ports: PHB. A shared root port means a shared switch below it (or one multi-function card):
    PIX when each device hangs one port below the deepest shared bridge (downstream port + device,
    or a sibling function), PXB when more bridges lie between (nested switches, as on DGX A100)."""
    if a is None or b is None:
        if numa_a is None or numa_b is None:
            return "?"
        return "NODE" if numa_a == numa_b else "SYS"
    if a[0] != b[0]:
        return "NODE" if numa_a is not None and numa_a == numa_b else "SYS"
    shared = 0
    for x, y in zip(a[:-1], b[:-1], strict=False):
        if x != y:
            break
        shared += 1
    if shared <= 1:
        return "PHB"
    return "PIX" if len(a) - shared <= 2 and len(b) - shared <= 2 else "PXB"


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace").strip()


def _numa(path: Path) -> int | None:
    try:
        value = int(_read(path))
    except (OSError, ValueError):
        return None
    return value if value >= 0 else None


def _natural(name: str) -> list:
    """mlx5_2 before mlx5_10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
