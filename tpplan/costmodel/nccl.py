"""All-reduce across nodes as NCCL prices it, and picks it.

NCCL gives every (algorithm, protocol) pair a latency and a bandwidth and runs the pair with the
smallest `latency + bytes / bandwidth` (src/graph/tuning.cc, ncclTopoTuneModel / ncclTopoGetAlgoTime,
NVIDIA/nccl 2.19-2.29). This module keeps that structure and NCCL's published constants, so the
choice moves the way NCCL's does: tree (LL) for small messages over several nodes, ring for large
ones, NVLS-tree where NVSwitch can reduce in the switch, CollNet where InfiniBand SHARP can. What
differs between clusters — the bandwidth each NIC really moves, how far the real latencies sit from
NCCL's constants, how ring bandwidth sags with more nodes — comes from `NetworkAllReduce`
(fitted to nccl-tests tables by scripts/derive_collective_tables.py, or published link numbers).

Bandwidths below are algorithm bandwidths (bytes of message per second), as tuning.cc converts them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..specs import HardwareProfile, NetworkAllReduce

# tuning.cc baseLat and hwLat (us), per algorithm and protocol.
PROTOCOLS = ("LL", "LL128", "Simple")


def _by_protocol(**algorithms: tuple[float, ...]) -> dict[str, dict[str, float]]:
    """{algorithm: {protocol: us}} from (LL, LL128, Simple) tuples; Simple-only ones give one value."""
    return {a: dict(zip(PROTOCOLS[-len(v) :], v, strict=True)) for a, v in algorithms.items()}


BASE_LAT = _by_protocol(tree=(6.8, 14.0, 0.0), ring=(6.6, 14.0, 8.4), nvls_tree=(0.0,), collnet=(0.0,))
NVLINK_HOP = _by_protocol(tree=(0.6, 1.25, 28.0), ring=(0.6, 1.9, 3.4), nvls_tree=(23.0,), collnet=(2.8,))
PCI_HOP = _by_protocol(tree=(1.0, 1.9, 28.0), ring=(1.0, 2.5, 5.7), collnet=(2.8,))
NET_HOP = _by_protocol(tree=(5.0, 8.5, 28.0), ring=(2.7, 4.0, 14.0), nvls_tree=(14.0,), collnet=(30.0,))
NET_OVERHEAD_US = 1.0  # getNetOverhead: a network post on x86 (x3 for Simple), per ring step
LL_MAX_BUSBW = 39.0  # llMaxBws, Intel host over 2 nodes: LL's ceiling (GB/s)
# treeCorrectionFactor: trees run below the model at medium sizes; index log2(bytes / 64), 64 B..128 MB.
TREE_CORRECTION = {
    "LL": (1, 1, 1, 1, 0.9, 0.8, 0.7, 0.7, 0.7, 0.7, 0.6, 0.5, 0.4, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1, 1),
    "LL128": (
        1,
        1,
        1,
        1,
        1,
        0.9,
        0.8,
        0.8,
        0.8,
        0.7,
        0.6,
        0.6,
        0.6,
        0.5,
        0.6,
        0.6,
        0.7,
        0.7,
        0.8,
        0.9,
        0.9,
        1,
    ),
    "Simple": (
        0.9,
        0.9,
        0.9,
        0.9,
        0.9,
        0.9,
        0.9,
        0.8,
        0.7,
        0.6,
        0.6,
        0.5,
        0.5,
        0.5,
        0.5,
        0.5,
        0.5,
        0.6,
        0.6,
        0.7,
        0.8,
        0.9,
    ),
}
# Ring busbw over NVLink without NVLS: ~78% of the unidirectional link (8x A100: 235 of 300 GB/s,
# ml-engineering); PCIe rings ~50% of the slot (NVIDIA/nccl#1639). Same ratios as params.py's priors.
NVLINK_RING_FRACTION, PCIE_RING_FRACTION = 0.78, 0.5
# CollNet (SHARP) all-reduce moves ~0.72 of the node's NIC bandwidth as algbw: 533-548 GB/s busbw over
# 2-46 nodes of 8x B200 with 8 NDR NICs (togethercomputer/together-nccl-tests, use3a-ss 2026-05-02).
COLLNET_FRACTION = 0.72
# Simple streams in chunks through every channel; until a message fills the pipeline the time grows
# with it (NetworkAllReduce.fill_us). 8 MiB: 16 channels x 512 KiB chunks (NCCL's Simple chunk size).
FILL_BYTES = 16 * 512 * 1024


@dataclass(frozen=True)
class NcclChoice:
    algorithm: str  # ring | tree | nvls_tree | collnet
    protocol: str  # LL | LL128 | Simple
    latency_us: float  # the pair's fixed cost
    time_us: float  # latency + bytes / bandwidth


@dataclass(frozen=True)
class NodeShape:
    """What the inter-node algorithms need to know about one node of the group."""

    per_node: int  # ranks on each node
    nodes: int
    ring_intra_gbps: float  # busbw a ring sustains inside the node (NVLink or PCIe)
    nvls_algbw_gbps: float | None  # NVLS reduce inside the node (algbw); None without NVLink SHARP
    nvlink: bool


def node_shape(profile: HardwareProfile, ranks: int, *, nvls_busbw_gbps: float | None) -> NodeShape:
    """The group of `ranks` laid over whole nodes, as placement does (an even split)."""
    nodes = math.ceil(ranks / profile.gpus_per_node)
    per_node = ranks // nodes
    nvlink = profile.nvlink is not None and profile.domain_size >= per_node > 1
    if nvlink:
        assert profile.nvlink is not None
        ring = profile.nvlink.per_gpu_unidir_gbps.value * NVLINK_RING_FRACTION
    else:
        ring = profile.pcie.per_gpu_unidir_gbps.value * PCIE_RING_FRACTION
    nvls = None
    if nvlink and profile.nvlink and profile.nvlink.in_switch_reduction and nvls_busbw_gbps:
        nvls = nvls_busbw_gbps * per_node / (2 * (per_node - 1))
    return NodeShape(per_node, nodes, ring, nvls, nvlink)


def _candidates(net: NetworkAllReduce, shape: NodeShape) -> list[tuple[str, str, float, float]]:
    """(algorithm, protocol, latency_us, algbw_gbps) for every pair NCCL would consider."""
    g, k = shape.per_node, shape.nodes
    n = g * k
    nic = g * net.nic_busbw_gbps  # the node's NICs together
    hop = NVLINK_HOP if shape.nvlink else PCI_HOP
    doublings = max(0.0, math.log2(k / 2))
    out = []
    # Ring: 2(n-1) steps, 2k of them across the network; busbw limited by the slower of NVLink and NICs.
    ring_bus = min(shape.ring_intra_gbps, nic) * max(0.1, 1 - net.ring_decay * doublings)
    for p in PROTOCOLS:
        bus = {"LL": min(ring_bus / 4, LL_MAX_BUSBW), "LL128": ring_bus * 0.92, "Simple": ring_bus}[p]
        steps, inter = 2 * (n - 1), 2 * k
        intra_lat = max(hop["ring"][p], NET_OVERHEAD_US * (3 if p == "Simple" else 1))
        lat = BASE_LAT["ring"][p] + (steps - inter) * intra_lat + inter * NET_HOP["ring"][p]
        out.append(("ring", p, lat, bus * n / (2 * (n - 1))))
    # Tree: a chain inside each node, a double binary tree across nodes; beyond 2 nodes each NIC
    # carries both trees' traffic (tuning.cc uses bwInter, about half of bwIntra).
    tree_bus = 0.92 * min(shape.ring_intra_gbps, nic if k <= 2 else nic / 2)
    depth = math.log2(k)
    for p in PROTOCOLS:
        bus = {"LL": min(tree_bus / 3.8, LL_MAX_BUSBW), "LL128": tree_bus * 120 / 128, "Simple": tree_bus}[p]
        lat = BASE_LAT["tree"][p] + 2 * ((g - 1) * hop["tree"][p] + depth * NET_HOP["tree"][p])
        out.append(("tree", p, lat, bus * 0.5))
    if shape.nvls_algbw_gbps:  # NVLS inside the node, tree across nodes (Simple only)
        algbw = min(shape.nvls_algbw_gbps, nic if k <= 2 else nic / 2 * 5 / 6)
        lat = NVLINK_HOP["nvls_tree"]["Simple"] + 2 * depth * NET_HOP["nvls_tree"]["Simple"]
        out.append(("nvls_tree", "Simple", lat, algbw))
    if net.in_network_reduction:  # CollNet chain: the switches reduce (SHARP)
        lat = 2 * (g - 1) * hop["collnet"]["Simple"] + NET_HOP["collnet"]["Simple"]
        out.append(("collnet", "Simple", lat, nic * COLLNET_FRACTION))
    return out


def _tree_factor(protocol: str, nbytes: float) -> float:
    idx = int(math.log2(max(nbytes, 64) / 64))
    return TREE_CORRECTION[protocol][idx] if idx < len(TREE_CORRECTION[protocol]) else 1.0


def algorithm_times(net: NetworkAllReduce, shape: NodeShape, *, nbytes: float) -> list[NcclChoice]:
    """Every (algorithm, protocol) NCCL considers for one all-reduce of `nbytes`, with its time."""
    out = []
    for algo, proto, lat, algbw in _candidates(net, shape):
        if algo == "tree":
            algbw *= _tree_factor(proto, nbytes)
        lat *= net.latency_scale
        fill = net.fill_us * min(1.0, nbytes / FILL_BYTES) if proto == "Simple" else 0.0
        out.append(NcclChoice(algo, proto, lat, lat + fill + nbytes / (algbw * 1e3)))
    return out


def nccl_allreduce(net: NetworkAllReduce, shape: NodeShape, *, nbytes: float) -> NcclChoice:
    """The pair NCCL runs: the smallest predicted time."""
    return min(algorithm_times(net, shape, nbytes=nbytes), key=lambda c: c.time_us)
