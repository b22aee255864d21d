"""HardwareProfile: one node kind (GPU, NVLink domain, PCIe, inter-node fabric, price).

Profiles ship in `hardware_profiles/*.yaml` and are written by `tpplan detect`. Every number
is a `Sourced` value; the GPU budget of a plan may span several nodes of the same kind.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from .base import Frozen, Name, bounded
from .collectives import NetworkAllReduce
from .efficiency import Efficiency
from .topology import Topology

GiB = bounded(0, 16_384, "GiB")
TFlops = bounded(0, 1_000_000, "TFLOP/s")
GBps = bounded(0, 1_000_000, "GB/s")
Micros = bounded(0, 1_000_000, "us")
UsdPerHour = bounded(0, 10_000, "USD per GPU-hour")

FabricKind = Literal["ib-hdr", "ib-ndr", "ib-xdr", "roce", "efa", "ethernet", "loopback"]


class GpuSpec(Frozen):
    """The accelerator (or, for a gloo profile, one CPU rank)."""

    name: Name = Field(description="device name as NVML reports it or as sold, e.g. H100 SXM5 80GB")
    memory_gib: GiB = Field(description="device memory")
    bf16_dense_tflops: TFlops = Field(description="peak dense BF16 tensor throughput (no sparsity)")
    fp8_dense_tflops: TFlops | None = Field(
        None, description="peak dense FP8 throughput; absent when unsupported"
    )
    hbm_gbps: GBps = Field(description="peak device-memory bandwidth")
    nvml_names: tuple[Name, ...] = Field(
        (),
        strict=False,
        description="names NVML reports for this GPU (nvmlDeviceGetName, without the NVIDIA prefix); "
        "`tpplan detect` fills in this profile's numbers for a GPU of that name",
    )

    @property
    def supports_fp8(self) -> bool:
        return self.fp8_dense_tflops is not None


class NvlinkSpec(Frozen):
    """The NVLink domain: GPUs that reach each other over NVLink (directly or through NVSwitch)."""

    generation: Name = Field(description="e.g. NVLink4")
    domain_size_gpus: Annotated[int, Field(ge=2, le=4096)] = Field(
        description="GPUs in one NVLink domain: 8 on a DGX, 2 with bridges, 72 on GB200 NVL72"
    )
    per_gpu_unidir_gbps: GBps = Field(description="NVLink bandwidth per GPU, one direction")
    nvswitch: bool = Field(description="domain is joined by NVSwitch (all-to-all) rather than bridges")
    in_switch_reduction: bool = Field(False, description="NVLink SHARP (NVLS) all-reduce available")


class PcieSpec(Frozen):
    generation: Annotated[int, Field(ge=3, le=7)] = Field(description="PCIe generation of the GPU slot")
    per_gpu_unidir_gbps: GBps = Field(description="x16 slot bandwidth, one direction")


class FabricSpec(Frozen):
    """The network between nodes (used when a TP or PP group spans nodes)."""

    kind: FabricKind = Field(description="ib-hdr | ib-ndr | ib-xdr | roce | efa | ethernet | loopback")
    per_gpu_gbps: GBps = Field(description="network bandwidth per GPU, one direction")
    latency_us: Micros = Field(description="small-message latency of one hop")
    allreduce: NetworkAllReduce | None = Field(
        None,
        description="NCCL all-reduce numbers on this fabric (fitted or published); absent: the link rate",
    )


class PriceSpec(Frozen):
    usd_per_gpu_hour: UsdPerHour = Field(description="price of one GPU for one hour")
    # YAML reads an unquoted 2026-04-27 as a date; keep it as the text the user wrote.
    date: Annotated[str, BeforeValidator(lambda v: v.isoformat() if hasattr(v, "isoformat") else v)] = Field(
        min_length=4, max_length=40, description="when that price was read"
    )


class HardwareProfile(Frozen):
    """One node kind, and how many of them the budget may use."""

    name: Name = Field(description="short name, e.g. dgx-h100")
    description: str = Field("", description="one line for `tpplan profiles`")
    backend: Literal["nccl", "gloo"] = Field("nccl", description="torch.distributed backend on this hardware")
    gpu: GpuSpec
    gpus_per_node: Annotated[int, Field(ge=1, le=1024)] = Field(description="GPUs (or CPU ranks) in one node")
    nodes: Annotated[int, Field(ge=1, le=100_000)] = Field(1, description="nodes available by default")
    nvlink: NvlinkSpec | None = Field(None, description="NVLink domain; absent on PCIe-only machines")
    pcie: PcieSpec
    inter_node: FabricSpec | None = Field(None, description="fabric between nodes; absent if none is known")
    price: PriceSpec
    notes: tuple[str, ...] = Field((), strict=False, description="caveats about these numbers")
    topology: Topology | None = Field(
        None, description="what `tpplan detect` read from the machine (GPUs, NVLinks, domains, matrix, HCAs)"
    )
    efficiency: Efficiency | None = Field(
        None,
        description="achieved fractions, overheads and collective curves (fitted); absent: documented priors",
    )

    @model_validator(mode="after")
    def _domain_fits_nodes(self) -> HardwareProfile:
        d = self.nvlink.domain_size_gpus if self.nvlink else 1
        g = self.gpus_per_node
        if d > g and d % g:
            raise ValueError(
                f"nvlink.domain_size_gpus ({d}) spans nodes but is not a multiple of gpus_per_node ({g})"
            )
        if d < g and g % d:
            raise ValueError(f"gpus_per_node ({g}) is not a multiple of nvlink.domain_size_gpus ({d})")
        return self

    @property
    def total_gpus(self) -> int:
        return self.gpus_per_node * self.nodes

    @property
    def domain_size(self) -> int:
        """GPUs per NVLink domain; 1 when GPUs talk only over PCIe."""
        return self.nvlink.domain_size_gpus if self.nvlink else 1

    def domain_of(self, gpu: int) -> int:
        """NVLink-domain id of a global GPU index (GPUs numbered node by node)."""
        return gpu // self.domain_size

    def node_of(self, gpu: int) -> int:
        return gpu // self.gpus_per_node
