"""All-reduce and point-to-point times over a profile's fabrics, in nccl-tests' conventions.

    t_allreduce(S, n) = alpha(n, fabric) + S · 2(n−1)/n ÷ busbw(S, n, fabric)        (PERFORMANCE.md)
    algbw = S / t,  busbw = algbw · 2(n−1)/n

Inside an NVLink domain (or over PCIe) one fitted curve per rank count gives alpha and busbw(S).
A TP group that spans nodes runs as NCCL runs it (costmodel/nccl.py): NCCL's tuning model prices
ring, tree, NVLS-tree and CollNet with each protocol, and the cheapest pair is the estimate; the
cluster's NIC bandwidth and latency scale come from the profile's `inter_node.allreduce` (fitted to
nccl-tests tables) or, without one, from the link rate (published).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..records import Provenance
from ..specs import AllReduceCurve, HardwareProfile, NetworkAllReduce
from .nccl import NcclChoice, NodeShape, algorithm_times, nccl_allreduce, node_shape
from .params import NIC_FRACTION, NVLINK_BUSBW_FRACTION, PCIE_BUSBW_FRACTION, Params

BYTES_PER_US_PER_GBPS = 1e3  # 1 GB/s = 1e9 B/s = 1e3 B/us


def ring_factor(ranks: int) -> float:
    """Bytes each rank sends per byte of message in a ring all-reduce: 2(n−1)/n."""
    return 2 * (ranks - 1) / ranks


def saturating_busbw(peak_gbps: float, half_bytes: float, *, shape: float, nbytes: float) -> float:
    return peak_gbps / (1 + (half_bytes / max(nbytes, 1.0)) ** shape)


def allreduce_us(
    alpha_us: float, peak_gbps: float, *, half_bytes: float, shape: float, ranks: int, nbytes: float
) -> float:
    busbw = saturating_busbw(peak_gbps, half_bytes, shape=shape, nbytes=nbytes)
    return alpha_us + nbytes * ring_factor(ranks) / (busbw * BYTES_PER_US_PER_GBPS)


def curve_time_us(curve: AllReduceCurve, nbytes: float) -> float:
    return allreduce_us(
        curve.alpha_us,
        curve.peak_busbw_gbps,
        half_bytes=curve.half_bytes,
        shape=curve.shape,
        ranks=curve.ranks,
        nbytes=nbytes,
    )


@dataclass(frozen=True)
class AllReduceTime:
    latency_us: float
    fabric: str
    implementation: str
    provenance: dict[str, Provenance]  # each number it used, named (allreduce: the curve)
    algorithm: str = "curve"  # curve (fitted per rank count) | custom | <nccl algorithm>/<protocol>


def allreduce_time(
    params: Params, nbytes: float, *, ranks: int, fabric: str, engine_kernels: bool = False
) -> AllReduceTime:
    """One all-reduce of `nbytes` over `ranks` ranks whose slowest link is `fabric`.

    `engine_kernels`: a serving engine may use its own all-reduce kernel inside an NVLink domain
    (vLLM's custom all-reduce); it picks whichever of that and NCCL is faster for the size.
    """
    if ranks <= 1 or fabric == "none":
        return AllReduceTime(0.0, "none", "none", {}, "none")
    if fabric == "network":
        return _hierarchical(params, nbytes, ranks, engine_kernels)
    found = params.allreduce_curve(fabric, "backend", ranks=ranks)
    assert found is not None  # the backend always has a prior
    curve, source, basis = found
    why = Provenance(value=f"{fabric} backend all-reduce", basis=basis, source=source)
    best = AllReduceTime(curve_time_us(curve, nbytes), fabric, "backend", {"allreduce": why})
    if engine_kernels and fabric == "nvlink":
        custom = params.allreduce_curve(fabric, "custom", ranks=ranks)
        if custom:
            t = curve_time_us(custom[0], nbytes)
            if t < best.latency_us:
                why = Provenance(value=f"{fabric} engine all-reduce", basis=custom[2], source=custom[1])
                best = AllReduceTime(t, fabric, "custom", {"allreduce": why}, "custom")
    return best


def _hierarchical(params: Params, nbytes: float, ranks: int, engine_kernels: bool) -> AllReduceTime:
    profile = params.profile
    fitted = params.eff.allreduce_fit("network", "backend") if params.eff else None
    if fitted:  # the user measured this fabric (nccl-tests across nodes): trust it over the composition
        found = params.allreduce_curve("network", "backend", ranks=ranks)
        assert found is not None
        return AllReduceTime(
            curve_time_us(found[0], nbytes),
            "network",
            "backend",
            {"allreduce": Provenance(value="network all-reduce", basis=found[2], source=found[1])},
        )
    if profile.inter_node is None:
        raise ValueError(f"profile {profile.name} has no inter-node fabric")
    net = network_params(profile)
    shape = network_shape(params, ranks)
    choice = nccl_allreduce(net, shape, nbytes=nbytes)
    why = Provenance(
        value=f"NCCL {choice.algorithm}/{choice.protocol} over {shape.nodes} nodes x {shape.per_node} GPUs "
        f"(NCCL tuning.cc model; latency {choice.latency_us:.1f} us): {profile.inter_node.kind} "
        f"{net.nic_busbw_gbps:g} GB/s per NIC, latency x{net.latency_scale:g}, ring decay "
        f"{net.ring_decay:g}/doubling",
        basis=net.basis,
        source=net.source,
    )
    algorithm = f"{choice.algorithm}/{choice.protocol}"
    return AllReduceTime(choice.time_us, "network", "backend", {"allreduce_inter_node": why}, algorithm)


def network_shape(params: Params, ranks: int) -> NodeShape:
    """The group of `ranks` over whole nodes, with the NVLS bandwidth of the node's fitted curve."""
    profile = params.profile
    per_node = ranks // math.ceil(ranks / profile.gpus_per_node)
    nvls = None
    if per_node > 1 and profile.nvlink and profile.nvlink.in_switch_reduction:
        found = params.allreduce_curve("nvlink", "backend", ranks=per_node)
        nvls = found[0].peak_busbw_gbps if found else None
    return node_shape(profile, ranks, nvls_busbw_gbps=nvls)


def network_choices(params: Params, nbytes: float, *, ranks: int) -> list[NcclChoice]:
    """Every (algorithm, protocol) NCCL weighs for this all-reduce across nodes, with its time."""
    assert params.profile.inter_node is not None
    return algorithm_times(network_params(params.profile), network_shape(params, ranks), nbytes=nbytes)


def network_params(profile: HardwareProfile) -> NetworkAllReduce:
    """The profile's NCCL numbers across nodes, or the link rate x NCCL's achieved share (published)."""
    assert profile.inter_node is not None
    if profile.inter_node.allreduce:
        return profile.inter_node.allreduce
    link = profile.inter_node.per_gpu_gbps
    return NetworkAllReduce(
        nic_busbw_gbps=link.value * NIC_FRACTION.value,
        source=f"{link.value:g} GB/s per GPU ({link.basis}: {link.source}) x {NIC_FRACTION.describe()}; "
        "latencies NCCL tuning.cc's own",
        basis="published" if link.basis == "published" else link.basis,
    )


def p2p_time_us(params: Params, nbytes: float, *, fabric: str) -> float:
    """One pipeline-stage send/recv of `nbytes` over `fabric` (nvlink | pcie | network)."""
    profile = params.profile
    alpha = params.p2p_alpha_us.value
    if fabric == "network" and profile.inter_node:
        bw = profile.inter_node.per_gpu_gbps.value * NIC_FRACTION.value
        alpha += profile.inter_node.latency_us.value
    elif fabric == "nvlink" and profile.nvlink:
        bw = profile.nvlink.per_gpu_unidir_gbps.value * NVLINK_BUSBW_FRACTION
    else:
        bw = profile.pcie.per_gpu_unidir_gbps.value * PCIE_BUSBW_FRACTION
    return alpha + nbytes / (bw * BYTES_PER_US_PER_GBPS)


def alltoall_time(params: Params, nbytes: float, *, ranks: int, fabric: str) -> tuple[float, Provenance]:
    """One all-to-all in which each of `ranks` ranks holds `nbytes` for the group (MoE dispatch or
    combine), in nccl-tests' convention: t = alpha + S·(n−1)/n ÷ busbw. Inside an NVLink domain or
    over PCIe it takes the alpha and busbw(S) of the fabric's all-reduce curve for that rank count —
    assumed: the same links carry it, and an all-to-all moves (n−1)/n of its buffer where a ring
    all-reduce moves 2(n−1)/n; across nodes the NIC rate as a point-to-point send takes it."""
    if ranks <= 1 or fabric == "none":
        return 0.0, Provenance(value="no all-to-all", basis="derived", source="one rank")
    share = nbytes * (ranks - 1) / ranks
    if fabric == "network":
        t = p2p_time_us(params, share, fabric="network")
        why = "the NIC rate per GPU (as a pipeline send), over the all-to-all's (n−1)/n share"
        return t, Provenance(value=why, basis="assumed", source="costmodel/collectives.py alltoall_time")
    found = params.allreduce_curve(fabric, "backend", ranks=ranks)
    assert found is not None  # the backend always has a prior
    curve, source, basis = found
    busbw = saturating_busbw(curve.peak_busbw_gbps, curve.half_bytes, shape=curve.shape, nbytes=nbytes)
    t = curve.alpha_us + share / (busbw * BYTES_PER_US_PER_GBPS)
    why = f"{fabric} all-reduce curve's alpha and busbw at {ranks} ranks, used for the all-to-all (assumed)"
    return t, Provenance(value=why, basis="assumed", source=f"{source} ({basis} for the all-reduce)")
