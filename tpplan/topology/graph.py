"""From links to structure: NVLink domains, the topo -m matrix, degraded links, nearest GPUs.

Pure functions of the records NVML and sysfs produced; no I/O.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from ..specs import GpuInfo, NvlinkLink, NvlinkPair
from ..specs.topology import PCIE_LEVELS


def domains(n_gpus: int, links: list[NvlinkLink]) -> list[list[int]]:
    """GPUs that reach each other over NVLink, directly or through NVSwitch: connected
    components of the graph whose nodes are GPUs and switches and whose edges are active links."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i in range(n_gpus):
        find(f"gpu{i}")
    for k in links:
        if not k.active:
            continue
        if k.remote_gpu is not None:
            parent[find(f"gpu{k.gpu}")] = find(f"gpu{k.remote_gpu}")
        elif k.remote_kind == "nvswitch" and k.remote_bus_id:
            parent[find(f"gpu{k.gpu}")] = find(f"sw{k.remote_bus_id.lower()}")
    groups: dict[str, list[int]] = defaultdict(list)
    for i in range(n_gpus):
        groups[find(f"gpu{i}")].append(i)
    return sorted(groups.values())


def nvlink_counts(n_gpus: int, links: list[NvlinkLink]) -> list[list[int]]:
    """NV# of every GPU pair: direct links between them, plus, through NVSwitch, the links the
    weaker of the two has into the switches both reach (a degraded GPU gates its pairs)."""
    direct = [[0] * n_gpus for _ in range(n_gpus)]
    into: list[Counter] = [Counter() for _ in range(n_gpus)]
    for k in links:
        if not k.active:
            continue
        if k.remote_gpu is not None:
            direct[k.gpu][k.remote_gpu] += 1
        elif k.remote_kind == "nvswitch" and k.remote_bus_id:
            into[k.gpu][k.remote_bus_id.lower()] += 1
    counts = [[0] * n_gpus for _ in range(n_gpus)]
    for i in range(n_gpus):
        for j in range(n_gpus):
            if i == j:
                continue
            shared = into[i].keys() & into[j].keys()
            switched = min(sum(into[i][s] for s in shared), sum(into[j][s] for s in shared)) if shared else 0
            # Each side reports its own links; one side may have failed to answer.
            counts[i][j] = max(direct[i][j], direct[j][i]) + switched
    return counts


def matrix(pcie: list[list[str]], counts: list[list[int]]) -> list[list[str]]:
    """nvidia-smi topo -m: NV# where GPUs share NVLinks, else the PCIe level."""
    return [
        [f"NV{counts[i][j]}" if i != j and counts[i][j] else cell for j, cell in enumerate(row)]
        for i, row in enumerate(pcie)
    ]


def pairs(counts: list[list[int]], links: list[NvlinkLink]) -> list[NvlinkPair]:
    """Every GPU pair with NV# > 0, with its one-direction rate (NV# x the slowest link's rate)."""
    speeds = [k.speed_gbps for k in links if k.active and k.speed_gbps]
    rate = min(speeds) if speeds else None
    n = len(counts)
    return [
        NvlinkPair(gpus=[i, j], links=counts[i][j], gbps=round(counts[i][j] * rate, 3) if rate else None)
        for i in range(n)
        for j in range(i + 1, n)
        if counts[i][j]
    ]


def degraded_links(gpus: list[GpuInfo], links: list[NvlinkLink]) -> list[str]:
    """A link down on one GPU while most GPUs of the same kind have that link up."""
    by_gpu: dict[int, dict[int, bool]] = defaultdict(dict)
    for k in links:
        by_gpu[k.gpu][k.link] = k.active
    out = []
    for g in gpus:
        peers = [p for p in gpus if p.index != g.index and p.name == g.name and p.nvlinks_total]
        down = []
        for link, active in sorted(by_gpu[g.index].items()):
            up_elsewhere = sum(by_gpu[p.index].get(link, False) for p in peers)
            if not active and peers and up_elsewhere * 2 > len(peers):
                down.append(link)
        if down:
            names = ", ".join(str(x) for x in down)
            out.append(
                f"GPU {g.index}: NVLink {names} down while its peers have {'it' if len(down) == 1 else 'them'} up; "
                f"{g.nvlinks_active} of {g.nvlinks_total} links active (check `nvidia-smi nvlink -s -i {g.index}`)"
            )
    return out


def nearest(levels: list[str]) -> list[int]:
    """GPUs at the best level, when that is within a NUMA node (PIX, PXB, PHB or NODE)."""
    known = [lv for lv in levels if lv in PCIE_LEVELS]
    if not known:
        return []
    best = min(known, key=PCIE_LEVELS.index)
    if best == "SYS":
        return []
    return [i for i, lv in enumerate(levels) if lv == best]
