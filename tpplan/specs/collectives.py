"""NetworkAllReduce: how NCCL's all-reduce performs over a profile's inter-node fabric.

The algorithm structure (ring, tree, NVLS-tree, CollNet/SHARP; LL, LL128 and Simple protocols, their
latencies per hop) is NCCL's own tuning model (src/graph/tuning.cc), fixed in
`tpplan/costmodel/nccl.py`. What differs between clusters, and is fitted to nccl-tests tables or
taken from the fabric's published numbers, lives here.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .base import Basis, Frozen


class NetworkAllReduce(Frozen):
    """Cluster-specific numbers of NCCL's all-reduce across nodes (one NIC per GPU assumed)."""

    nic_busbw_gbps: Annotated[float, Field(gt=0, le=10_000)] = Field(
        description="bandwidth NCCL moves through each GPU's NIC (NDR 400G: 46-48 GB/s of 50)"
    )
    latency_scale: Annotated[float, Field(gt=0, le=20)] = Field(
        1.0, description="multiplier on NCCL's tuning.cc latencies (1: NCCL's own constants)"
    )
    ring_decay: Annotated[float, Field(ge=0, lt=0.5)] = Field(
        0.0, description="fraction of ring busbw lost per doubling of the node count beyond 2"
    )
    fill_us: Annotated[float, Field(ge=0, le=10_000)] = Field(
        0.0,
        description="pipeline fill of the Simple protocol: extra time reached once a message spans "
        "NCCL's chunks across all channels (nccl.FILL_BYTES); 0 in NCCL's own model",
    )
    in_network_reduction: bool = Field(
        False, description="the switches reduce (InfiniBand SHARP): NCCL's CollNet algorithms are available"
    )
    source: str = Field(min_length=1, description="what these numbers were fitted from or published in")
    basis: Basis = Field("fitted", description="published | measured | fitted | derived | assumed")
