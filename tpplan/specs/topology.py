"""Topology: what `tpplan detect` read from one machine, carried in the profile it writes.

GPUs as NVML reports them, every NVLink with its state and remote end, the NVLink domains
(GPUs that reach each other over NVLink, directly or through NVSwitch), the GPU x GPU
connection matrix in the vocabulary of `nvidia-smi topo -m`, and the InfiniBand / RoCE ports
from sysfs with the GPUs nearest to each. Hand-written profiles leave it out.

Matrix cells, as `nvidia-smi topo -m` prints them (its legend):
  X     the GPU itself
  NV#   a bonded set of # NVLinks (through NVSwitch: the links both GPUs have into the fabric)
  PIX   at most a single PCIe bridge (one PCIe switch)
  PXB   multiple PCIe bridges, without traversing the PCIe host bridge
  PHB   a PCIe host bridge (typically the CPU)
  NODE  the interconnect between PCIe host bridges within a NUMA node
  SYS   the SMP interconnect between NUMA nodes (QPI/UPI, Infinity Fabric)
  ?     unknown: an NVML call or sysfs read for it failed (see `errors`)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import Frozen

# Nearest first; the order `nearest_gpus` and the fabric choice rely on.
PCIE_LEVELS = ("X", "PIX", "PXB", "PHB", "NODE", "SYS")
Index = Annotated[int, Field(ge=0, le=100_000)]
RemoteKind = Literal["gpu", "nvswitch", "cpu", "unknown"]


class GpuInfo(Frozen):
    """One GPU as NVML reports it; a field is None when its NVML call failed or is unsupported."""

    index: Index = Field(description="NVML device index (nvidia-smi's GPU number)")
    name: str = Field(description="nvmlDeviceGetName, e.g. NVIDIA A100-SXM4-80GB; empty if unknown")
    uuid: str | None = Field(None, description="nvmlDeviceGetUUID")
    memory_mib: Index | None = Field(None, description="nvmlDeviceGetMemoryInfo total, MiB")
    pci_bus_id: str | None = Field(None, description="nvmlDeviceGetPciInfo busId, e.g. 00000000:07:00.0")
    numa_node: int | None = Field(None, description="NUMA node of the GPU's PCIe attach point")
    cpu_affinity: str | None = Field(
        None, description="CPUs near the GPU (nvmlDeviceGetCpuAffinity), e.g. 48-63,176-191"
    )
    mig_mode: Literal["enabled", "disabled"] | None = Field(
        None, description="current MIG mode; None: not supported"
    )
    pcie_generation: int | None = Field(None, description="nvmlDeviceGetMaxPcieLinkGeneration")
    pcie_width: int | None = Field(None, description="nvmlDeviceGetMaxPcieLinkWidth (lanes)")
    nvlinks_active: Index = Field(0, description="NVLinks in state active")
    nvlinks_total: Index = Field(0, description="NVLinks the GPU has (active or not)")


class NvlinkLink(Frozen):
    """One NVLink of one GPU."""

    gpu: Index = Field(description="local GPU index")
    link: Index = Field(description="link number on that GPU")
    active: bool = Field(description="nvmlDeviceGetNvLinkState is enabled")
    remote_kind: RemoteKind | None = Field(
        None, description="what the link reaches; None when inactive or unread"
    )
    remote_bus_id: str | None = Field(None, description="nvmlDeviceGetNvLinkRemotePciInfo busId")
    remote_gpu: Index | None = Field(None, description="local index of the peer GPU, when the remote is one")
    version: str | None = Field(None, description="NVLink version from nvmlDeviceGetNvLinkVersion, e.g. 3.1")
    speed_gbps: float | None = Field(None, description="link rate per direction as NVML reports it, GB/s")

    def remote_label(self) -> str:
        if not self.active:
            return "inactive"
        if self.remote_gpu is not None:
            return f"GPU{self.remote_gpu}"
        names = {"nvswitch": "NVSwitch", "gpu": "GPU (not on this host)", "cpu": "CPU"}
        return f"{names.get(self.remote_kind or '', 'unknown')} {self.remote_bus_id or '?'}"


class NvlinkPair(Frozen):
    """Two GPUs joined by NVLink, directly or through NVSwitch: what NV# in the matrix counts."""

    gpus: list[Index] = Field(min_length=2, max_length=2, description="the two GPU indices, lower first")
    links: Index = Field(
        description="NV#: direct links, plus through NVSwitch the weaker GPU's links into it"
    )
    gbps: float | None = Field(
        None, description="links x per-link rate, one direction, GB/s; None if NVML gave no rate"
    )


class HcaPort(Frozen):
    """One port of an InfiniBand / RoCE adapter, from /sys/class/infiniband/<device>/ports/<port>/."""

    device: str = Field(description="e.g. mlx5_0")
    port: Index = Field(description="port number")
    state: str = Field(description="state file without its number, e.g. ACTIVE, DOWN")
    rate: str = Field(description="rate file as written, e.g. 200 Gb/sec (4X HDR)")
    rate_gbit_per_s: float = Field(description="link rate in Gb/s (bits), e.g. 200")
    link_layer: str = Field(description="InfiniBand or Ethernet (RoCE)")
    kind: Literal["ib-hdr", "ib-ndr", "ib-xdr", "roce"] | None = Field(
        None, description="fabric kind of a profile's inter_node; None when tpplan has no kind for it"
    )
    pci_bus_id: str | None = Field(None, description="PCI address of the adapter function, e.g. 0000:0c:00.0")
    numa_node: int | None = Field(None, description="NUMA node of the adapter")
    gpu_levels: list[str] = Field(description="connection to each GPU, in GPU order (PIX ... SYS)")
    nearest_gpus: list[Index] = Field(
        description="GPUs at the nearest level, when that is within a NUMA node"
    )

    @property
    def label(self) -> str:
        return self.device if self.port == 1 else f"{self.device}:{self.port}"

    @property
    def active(self) -> bool:
        return self.state.startswith("ACTIVE")


class Topology(Frozen):
    """One machine's GPUs, NVLinks, NVLink domains, connection matrix and network ports."""

    host: str = Field(description="host name the topology was read on")
    source: str = Field(description="how it was read: NVML and driver versions, sysfs root")
    driver_version: str | None = Field(None, description="nvmlSystemGetDriverVersion")
    gpus: list[GpuInfo] = Field(description="GPUs in NVML index order")
    nvlinks: list[NvlinkLink] = Field(default_factory=list, description="every NVLink of every GPU")
    nvswitches: list[str] = Field(
        default_factory=list, description="PCI bus ids of the NVSwitches the links reach"
    )
    domains: list[list[Index]] = Field(
        default_factory=list, description="NVLink domains: GPU indices, each sorted"
    )
    matrix: list[list[str]] = Field(default_factory=list, description="GPU x GPU cells as nvidia-smi topo -m")
    pairs: list[NvlinkPair] = Field(
        default_factory=list, description="GPU pairs joined by NVLink: count and rate"
    )
    hcas: list[HcaPort] = Field(default_factory=list, description="InfiniBand / RoCE ports")
    warnings: list[str] = Field(default_factory=list, description="degraded links and other things to check")
    errors: list[str] = Field(default_factory=list, description="NVML calls and sysfs reads that failed")

    @property
    def domain_sizes(self) -> list[int]:
        return [len(d) for d in self.domains]
