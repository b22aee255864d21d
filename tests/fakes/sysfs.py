"""Build a fake /sys tree from a fixture's `sysfs` section, laid out as the kernel lays it out.

    sys/devices/<host bridge>/<bridge>/.../<bdf>/numa_node
    sys/bus/pci/devices/<bdf>                       -> ../../../devices/<path>
    sys/devices/<path>/infiniband/<hca>/device      -> ../../../<bdf>
    sys/devices/<path>/infiniband/<hca>/ports/<n>/{rate,state,link_layer}
    sys/class/infiniband/<hca>                      -> ../../devices/<path>/infiniband/<hca>

Every link is relative, so the tree works wherever it is built (tpplan reads it through
TPPLAN_SYSFS_ROOT or the `sysfs_root` parameter). Fixture section:

    sysfs:
      numa: {pci0000:00: 3, ...}          NUMA node of the devices below each host bridge
      gpus: [<path>, ...]                 PCI path of each GPU, host bridge first
      hcas: {mlx5_0: {path: <path>, ports: {1: [rate, state, link_layer]}}}

To build one by hand:  PYTHONPATH=tests python -m fakes.sysfs FIXTURE.yaml OUT_DIR
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fakes.nvml import load_fixture


def build(fixture: dict, root: Path) -> Path:
    spec = fixture.get("sysfs", {})
    numa = spec.get("numa", {})
    devices = root / "sys" / "devices"
    for path in spec.get("gpus", []):
        _device(root, path, numa)
    for name, hca in spec.get("hcas", {}).items():
        dev = _device(root, hca["path"], numa)
        ib = dev / "infiniband" / name
        for port, (rate, state, layer) in hca["ports"].items():
            d = ib / "ports" / str(port)
            d.mkdir(parents=True, exist_ok=True)
            for file, text in (("rate", rate), ("state", state), ("link_layer", layer)):
                (d / file).write_text(text + "\n")
        _symlink(ib / "device", Path("../../..") / dev.name)
        cls = root / "sys" / "class" / "infiniband"
        cls.mkdir(parents=True, exist_ok=True)
        _symlink(cls / name, Path(os.path.relpath(ib, cls)))
    devices.mkdir(parents=True, exist_ok=True)
    return root


def _device(root: Path, path: str, numa: dict) -> Path:
    dev = root / "sys" / "devices" / path
    dev.mkdir(parents=True, exist_ok=True)
    (dev / "numa_node").write_text(f"{numa.get(path.split('/')[0], -1)}\n")
    bus = root / "sys" / "bus" / "pci" / "devices"
    bus.mkdir(parents=True, exist_ok=True)
    _symlink(bus / dev.name, Path(os.path.relpath(dev, bus)))
    return dev


def _symlink(link: Path, target: Path) -> None:
    if not link.is_symlink():
        link.symlink_to(target)


if __name__ == "__main__":
    fixture_file, out = sys.argv[1:3]
    print(build(load_fixture(Path(fixture_file)), Path(out)))
