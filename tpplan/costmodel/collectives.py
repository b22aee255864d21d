"""All-reduce and point-to-point times over a profile's fabrics, in nccl-tests' conventions.

    t_allreduce(S, n) = alpha(n, fabric) + S · 2(n−1)/n ÷ busbw(S, n, fabric)        (PERFORMANCE.md)
    algbw = S / t,  busbw = algbw · 2(n−1)/n

Inside an NVLink domain (or over PCIe) one fitted curve per rank count gives alpha and busbw(S).
A TP group that spans k nodes of g GPUs runs hierarchically, as NCCL does with one NIC per GPU:
reduce-scatter + all-gather inside each node (one intra-node all-reduce of S over g ranks) and an
all-reduce of S/g across the k nodes on every NIC in parallel:

    t = t_intra(S, g) + alpha_network + (S/g) · 2(k−1)/k ÷ (nic_gbps · nic_fraction)

The phases are summed, not overlapped: conservative against NCCL's pipelined tree (2x DGX-A100 with
8 HDR NICs measure 192 GB/s busbw, NVIDIA/nccl#812; this gives ~150).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..records import Provenance
from ..specs import AllReduceCurve
from .params import NETWORK_ALPHA_US, NIC_FRACTION, NVLINK_BUSBW_FRACTION, PCIE_BUSBW_FRACTION, Params

BYTES_PER_US_PER_GBPS = 1e3  # 1 GB/s = 1e9 B/s = 1e3 B/us


def ring_factor(ranks: int) -> float:
    """Bytes each rank sends per byte of message in a ring all-reduce: 2(n−1)/n."""
    return 2 * (ranks - 1) / ranks


def saturating_busbw(peak_gbps: float, half_bytes: float, shape: float, nbytes: float) -> float:
    return peak_gbps / (1 + (half_bytes / max(nbytes, 1.0)) ** shape)


def allreduce_us(
    alpha_us: float, peak_gbps: float, half_bytes: float, shape: float, ranks: int, nbytes: float
) -> float:
    busbw = saturating_busbw(peak_gbps, half_bytes, shape, nbytes)
    return alpha_us + nbytes * ring_factor(ranks) / (busbw * BYTES_PER_US_PER_GBPS)


def busbw_gbps(curve: AllReduceCurve, nbytes: float) -> float:
    return saturating_busbw(curve.peak_busbw_gbps, curve.half_bytes, curve.shape, nbytes)


def curve_time_us(curve: AllReduceCurve, nbytes: float) -> float:
    return allreduce_us(
        curve.alpha_us, curve.peak_busbw_gbps, curve.half_bytes, curve.shape, curve.ranks, nbytes
    )


@dataclass(frozen=True)
class AllReduceTime:
    latency_us: float
    fabric: str
    implementation: str
    provenance: dict[str, Provenance]  # each number it used, named (allreduce: the curve)


def allreduce_time(
    params: Params, nbytes: float, ranks: int, fabric: str, engine_kernels: bool = False
) -> AllReduceTime:
    """One all-reduce of `nbytes` over `ranks` ranks whose slowest link is `fabric`.

    `engine_kernels`: a serving engine may use its own all-reduce kernel inside an NVLink domain
    (vLLM's custom all-reduce); it picks whichever of that and NCCL is faster for the size.
    """
    if ranks <= 1 or fabric == "none":
        return AllReduceTime(0.0, "none", "none", {})
    if fabric == "network":
        return _hierarchical(params, nbytes, ranks, engine_kernels)
    found = params.allreduce_curve(fabric, "backend", ranks)
    assert found is not None  # the backend always has a prior
    curve, source, basis = found
    why = Provenance(value=f"{fabric} backend all-reduce", basis=basis, source=source)
    best = AllReduceTime(curve_time_us(curve, nbytes), fabric, "backend", {"allreduce": why})
    if engine_kernels and fabric == "nvlink":
        custom = params.allreduce_curve(fabric, "custom", ranks)
        if custom:
            t = curve_time_us(custom[0], nbytes)
            if t < best.latency_us:
                why = Provenance(value=f"{fabric} engine all-reduce", basis=custom[2], source=custom[1])
                best = AllReduceTime(t, fabric, "custom", {"allreduce": why})
    return best


def _hierarchical(params: Params, nbytes: float, ranks: int, engine_kernels: bool) -> AllReduceTime:
    profile = params.profile
    fitted = params.eff.allreduce_fit("network", "backend") if params.eff else None
    if fitted:  # the user measured this fabric (nccl-tests across nodes): trust it over the composition
        found = params.allreduce_curve("network", "backend", ranks)
        assert found is not None
        return AllReduceTime(
            curve_time_us(found[0], nbytes),
            "network",
            "backend",
            {"allreduce": Provenance(value="network all-reduce", basis=found[2], source=found[1])},
        )
    if profile.inter_node is None:
        raise ValueError(f"profile {profile.name} has no inter-node fabric")
    nodes = math.ceil(ranks / profile.gpus_per_node)
    per_node = ranks // nodes
    intra_fabric = "nvlink" if profile.domain_size >= per_node > 1 else "pcie"
    intra = allreduce_time(params, nbytes, per_node, intra_fabric, engine_kernels)
    nic = profile.inter_node.per_gpu_gbps.value * NIC_FRACTION.value
    alpha = max(NETWORK_ALPHA_US.value, profile.inter_node.latency_us.value)
    inter = alpha + (nbytes / per_node) * ring_factor(nodes) / (nic * BYTES_PER_US_PER_GBPS)
    link = profile.inter_node.per_gpu_gbps
    why = Provenance(
        value=f"hierarchical over {nodes} nodes x {per_node} GPUs: {profile.inter_node.kind} "
        f"{link.value:g} GB/s per GPU",
        basis=link.basis,
        source=link.source,
    )
    parts = {
        **intra.provenance,
        "allreduce_inter_node": why,
        "nic_fraction": NIC_FRACTION.provenance(named=True),
        "network_alpha_us": NETWORK_ALPHA_US.provenance(named=True),
    }
    return AllReduceTime(intra.latency_us + inter, "network", "backend", parts)


def p2p_time_us(params: Params, nbytes: float, fabric: str) -> float:
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
