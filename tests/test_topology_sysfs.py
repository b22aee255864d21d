"""sysfs: InfiniBand / RoCE ports as the kernel writes them, and PCIe distance in topo -m words."""

from __future__ import annotations

import pytest
from fakes import FIXTURES, load_fixture, sysfs

from tpplan.topology import graph
from tpplan.topology.sysfs import numa_node, pci_path, pcie_level, read_ports


def path(text: str) -> tuple[str, ...]:
    return tuple(text.split("/"))


HB, RP = "pci0000:00", "0000:00:01.1"


@pytest.mark.parametrize(
    ("a", "b", "level"),
    [
        # two functions of one adapter straight on a root port (dual-port NIC): PIX
        (f"{HB}/{RP}/0000:61:00.0", f"{HB}/{RP}/0000:61:00.1", "PIX"),
        # siblings on one switch: upstream port, two downstream ports
        (
            f"{HB}/{RP}/0000:01:00.0/0000:02:00.0/0000:03:00.0",
            f"{HB}/{RP}/0000:01:00.0/0000:02:04.0/0000:05:00.0",
            "PIX",
        ),
        # nested switches (DGX A100's GPU and HCA): PXB
        (
            f"{HB}/{RP}/0000:01:00.0/0000:02:00.0/0000:03:00.0/0000:04:00.0/0000:07:00.0",
            f"{HB}/{RP}/0000:01:00.0/0000:02:04.0/0000:0a:00.0/0000:0b:00.0/0000:0c:00.0",
            "PXB",
        ),
        # one host bridge, different root ports: PHB
        (f"{HB}/{RP}/0000:02:00.0", f"{HB}/0000:00:03.1/0000:05:00.0", "PHB"),
    ],
)
def test_pcie_level_under_one_host_bridge(a, b, level):
    assert pcie_level(path(a), 0, b=path(b), numa_b=0) == level
    assert pcie_level(path(b), 0, b=path(a), numa_b=0) == level


def test_pcie_level_across_host_bridges_follows_numa():
    a, b = path("pci0000:00/0000:00:01.1/0000:02:00.0"), path("pci0000:40/0000:40:01.1/0000:41:00.0")
    assert pcie_level(a, 0, b=b, numa_b=0) == "NODE"
    assert pcie_level(a, 0, b=b, numa_b=1) == "SYS"
    assert pcie_level(None, 0, b=b, numa_b=0) == "NODE" and pcie_level(None, None, b=b, numa_b=0) == "?"


def test_ports_read_as_the_kernel_writes_them(tmp_path):
    root = sysfs.build(load_fixture(FIXTURES / "dgx-a100.yaml"), tmp_path)
    assert (root / "sys/class/infiniband/mlx5_0/ports/1/rate").read_text() == "200 Gb/sec (4X HDR)\n"
    ports, errors = read_ports(root)
    assert errors == [] and [p.device for p in ports][:3] == ["mlx5_0", "mlx5_1", "mlx5_2"]
    assert [p.device for p in ports][-2:] == ["mlx5_10", "mlx5_11"]  # natural order
    p0 = ports[0]
    assert (p0.port, p0.state, p0.rate_gbit_per_s, p0.link_layer, p0.kind) == (
        1,
        "ACTIVE",
        200,
        "InfiniBand",
        "ib-hdr",
    )
    assert p0.pci_bus_id == "0000:0c:00.0" and p0.numa_node == 3 and p0.pci_path[0] == "pci0000:00"
    eth = ports[-1]
    assert (eth.state, eth.kind, eth.rate_gbit_per_s) == ("DOWN", "roce", 100)
    assert pci_path(root, "0000:07:00.0")[-1] == "0000:07:00.0" and pci_path(root, "0000:99:00.0") is None


def test_no_infiniband_directory_means_no_ports(tmp_path):
    assert read_ports(tmp_path) == ([], [])


def test_unreadable_or_odd_port_files_are_reported_not_fatal(tmp_path):
    fixture = load_fixture(FIXTURES / "dgx-h100.yaml")
    root = sysfs.build(fixture, tmp_path)
    (root / "sys/class/infiniband/mlx5_3/ports/1/rate").write_text("fast\n")
    (root / "sys/class/infiniband/mlx5_4/ports/1/state").unlink()
    ports, errors = read_ports(root)
    assert len(ports) == 10
    assert errors[0] == "mlx5_3 port 1: rate 'fast' is not of the form '200 Gb/sec (4X HDR)'"
    assert errors[1].startswith("mlx5_4 port 1: cannot read") and "state" in errors[1]


def test_edr_infiniband_has_no_fabric_kind(tmp_path):
    fixture = load_fixture(FIXTURES / "dgx-a100.yaml")
    fixture["sysfs"]["hcas"] = {
        "mlx5_0": {
            "path": fixture["sysfs"]["hcas"]["mlx5_0"]["path"],
            "ports": {1: ["100 Gb/sec (4X EDR)", "4: ACTIVE", "InfiniBand"]},
        }
    }
    ports, _ = read_ports(sysfs.build(fixture, tmp_path))
    assert ports[0].kind is None and ports[0].rate_gbit_per_s == 100


def test_nearest_gpus_stop_at_the_numa_node():
    assert graph.nearest(["PXB", "PXB", "SYS"]) == [0, 1]
    assert graph.nearest(["NODE", "SYS", "NODE"]) == [0, 2]
    assert graph.nearest(["SYS", "SYS"]) == [] and graph.nearest(["?", "?"]) == []


@pytest.mark.parametrize("name", ["dgx-a100", "dgx-h100", "l40s-8x-pcie", "a100-pcie-nvlink-pairs"])
def test_sysfs_levels_of_gpu_pairs_agree_with_nvml(name, tmp_path):
    """The GPU x GPU levels NVML answers (nvmlDeviceGetTopologyCommonAncestor, from the captures)
    and the ones pcie_level derives from the same machine's PCI paths must be the same words."""
    fixture = load_fixture(FIXTURES / f"{name}.yaml")
    root = sysfs.build(fixture, tmp_path)
    bdfs = [p.split("/")[-1] for p in fixture["sysfs"]["gpus"]]
    paths = [pci_path(root, b) for b in bdfs]
    numa = [numa_node(root, b) for b in bdfs]
    derived = [
        [
            pcie_level(paths[i], numa[i], b=paths[j], numa_b=numa[j]) if i != j else "X"
            for j in range(len(bdfs))
        ]
        for i in range(len(bdfs))
    ]
    assert derived == [row.split() for row in fixture["nvml"]["pcie"]]
