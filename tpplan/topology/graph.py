"""From links to structure: NVLink domains, the topo -m matrix, degraded links, nearest GPUs.

Pure functions of the records NVML and sysfs produced; no I/O.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping

from ..specs import GpuInfo, NvlinkLink, NvlinkPair
from ..specs.topology import PCIE_LEVELS

Assumed = Mapping[tuple[int, int], str]  # (GPU, link) -> NVSwitch bus id taken from its peers


def domains(n_gpus: int, links: list[NvlinkLink], *, assumed: Assumed | None = None) -> list[list[int]]:
    """GPUs that reach each other over NVLink, directly or through NVSwitch: connected
    components of the graph whose nodes are GPUs and switches and whose edges are active links
    (an up link with an unread remote end counts with the switch `assumed` gives it)."""
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
        switch = _switch(k, assumed)
        if k.remote_gpu is not None:
            parent[find(f"gpu{k.gpu}")] = find(f"gpu{k.remote_gpu}")
        elif switch:
            parent[find(f"gpu{k.gpu}")] = find(f"sw{switch}")
    groups: dict[str, list[int]] = defaultdict(list)
    for i in range(n_gpus):
        groups[find(f"gpu{i}")].append(i)
    return sorted(groups.values())


def _switch(k: NvlinkLink, assumed: Assumed | None) -> str | None:
    """The NVSwitch an active link reaches: read from NVML, or assumed from its peers."""
    if k.remote_kind == "nvswitch" and k.remote_bus_id:
        return k.remote_bus_id.lower()
    return (assumed or {}).get((k.gpu, k.link))


def unread_remote(k: NvlinkLink) -> bool:
    """An up link whose remote end NVML could not read: an unknown endpoint, not no endpoint."""
    return k.active and k.remote_bus_id is None and k.remote_gpu is None


def like_peers(gpus: list[GpuInfo], links: list[NvlinkLink]) -> dict[tuple[int, int], str]:
    """Up links with an unread remote end on a GPU whose peers (every other GPU that answered,
    with all its links read) are of its kind, have as many up links as it has, all of them to
    NVSwitches of one domain: each such link is taken to reach the switch the peers' link of
    the same number reaches (assumed, as a GPU that does not answer is assumed like its peers)."""
    by_gpu: dict[int, list[NvlinkLink]] = defaultdict(list)
    for k in links:
        by_gpu[k.gpu].append(k)
    blind = {k.gpu for k in links if unread_remote(k)}
    out: dict[tuple[int, int], str] = {}
    for g in (g for g in gpus if g.index in blind):
        peers = [p for p in gpus if p.index != g.index and p.name and p.index not in blind]
        mine = [k for k in by_gpu[g.index] if k.active and not unread_remote(k)]
        fits = (
            peers
            and all(p.name == g.name and p.nvlinks_active == g.nvlinks_active for p in peers)
            and all(len(by_gpu[p.index]) == p.nvlinks_total for p in peers)  # no unknown state
            and all(_switch(k, None) for p in peers for k in by_gpu[p.index] if k.active)
            and all(_switch(k, None) for k in mine)
        )
        peer_links = [k for p in peers for k in by_gpu[p.index] if k.active]
        if not fits or len({tuple(d) for d in _peer_domains(gpus, peers, peer_links)}) != 1:
            continue
        for k in by_gpu[g.index]:
            if unread_remote(k):
                same = Counter(_switch(q, None) for q in peer_links if q.link == k.link)
                out[(g.index, k.link)] = (same or Counter(_switch(q, None) for q in peer_links)).most_common(
                    1
                )[0][0]
    return out


def _peer_domains(gpus: list[GpuInfo], peers: list[GpuInfo], links: list[NvlinkLink]) -> list[list[int]]:
    ids = {p.index for p in peers}
    return [d for d in domains(len(gpus), links) if set(d) & ids]


def membership_unknown(gpus: list[GpuInfo], links: list[NvlinkLink]) -> set[int]:
    """GPUs whose NVLink domain is unknown: no handle (nothing read), or links up whose remote
    ends are all unread and not assumed like the peers'. A GPU with one link read, its own or a
    peer's to it, is in that link's domain (unread links could only join more GPUs, never fewer)."""
    assumed = like_peers(gpus, links)
    by_gpu: dict[int, list[NvlinkLink]] = defaultdict(list)
    for k in links:
        by_gpu[k.gpu].append(k)
    reached = {k.remote_gpu for k in links if k.active}  # a peer's read link places it too
    out = set()
    for g in gpus:
        up = [k for k in by_gpu[g.index] if k.active]
        if g.index in reached:
            continue
        no_handle = not (g.name or g.uuid or g.pci_bus_id or by_gpu[g.index] or g.nvlinks_total)
        if no_handle or (up and all(unread_remote(k) and (g.index, k.link) not in assumed for k in up)):
            out.add(g.index)
    return out


def nvlink_counts(n_gpus: int, links: list[NvlinkLink], *, assumed: Assumed | None = None) -> list[list[int]]:
    """NV# of every GPU pair: direct links between them, plus, through NVSwitch, the links the
    weaker of the two has into the switches both reach (a degraded GPU gates its pairs)."""
    direct = [[0] * n_gpus for _ in range(n_gpus)]
    into: list[Counter] = [Counter() for _ in range(n_gpus)]
    for k in links:
        if not k.active:
            continue
        switch = _switch(k, assumed)
        if k.remote_gpu is not None:
            direct[k.gpu][k.remote_gpu] += 1
        elif switch:
            into[k.gpu][switch] += 1
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


def unknown_warnings(
    gpus: list[GpuInfo],
    links: list[NvlinkLink],
    *,
    unanswered: Mapping[int, str],
    state_unknown: Mapping[tuple[int, int], str],
    remote_unknown: Mapping[tuple[int, int], str],
) -> list[str]:
    """What NVML could not say, each with the failing call and error, and what was assumed."""
    assumed = like_peers(gpus, links)
    blind = membership_unknown(gpus, links)
    out = [
        f"GPU {i} did not answer ({why}): its NVLinks and NVLink domain are unknown, not absent"
        for i, why in sorted(unanswered.items())
    ]
    for (gpu, why), nums in _by_gpu_and_why(state_unknown).items():
        out.append(
            f"could not read NVLink {span(nums)} state of GPU {gpu}: {why.rsplit(' ', 1)[-1]} "
            f"({why.split()[0]}); state unknown, not counted as down"
        )
    for (gpu, why), nums in _by_gpu_and_why(remote_unknown).items():
        head = f"GPU {gpu} NVLink {span(nums)} up but its remote end unknown ({why})"
        if all((gpu, n) in assumed for n in nums):
            g = next(x for x in gpus if x.index == gpu)
            out.append(
                f"{head}; assumed to reach NVSwitch like its peers (every other GPU: {g.nvlinks_active} "
                f"up links, all to NVSwitch), so GPU {gpu} is assumed in their NVLink domain"
            )
        elif gpu in blind:
            out.append(
                f"{head}; its peers do not all reach NVSwitches with as many links, so GPU {gpu}'s "
                "NVLink domain is unknown (left out of the domain size, not counted as a domain of its own)"
            )
        else:
            out.append(
                f"{head}; GPU {gpu}'s NVLink domain comes from the links that were read (its own or its peers' to it)"
            )
    return out


def _by_gpu_and_why(unknown: Mapping[tuple[int, int], str]) -> dict[tuple[int, str], list[int]]:
    out: dict[tuple[int, str], list[int]] = defaultdict(list)
    for (gpu, link), why in sorted(unknown.items()):
        out[(gpu, why)].append(link)
    return dict(out)


def span(nums: list[int] | set[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    runs: list[list[int]] = []
    for x in sorted(nums):
        if runs and x == runs[-1][1] + 1:
            runs[-1][1] = x
        else:
            runs.append([x, x])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)


def nearest(levels: list[str]) -> list[int]:
    """GPUs at the best level, when that is within a NUMA node (PIX, PXB, PHB or NODE)."""
    known = [lv for lv in levels if lv in PCIE_LEVELS]
    if not known:
        return []
    best = min(known, key=PCIE_LEVELS.index)
    if best == "SYS":
        return []
    return [i for i, lv in enumerate(levels) if lv == best]
