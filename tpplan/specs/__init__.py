"""Input specs: what the user tells tpplan (model, hardware, workload), validated once."""

from .base import Basis, Frozen, Sourced
from .collectives import NetworkAllReduce
from .efficiency import AllReduceCurve, AllReduceFit, Efficiency, EngineOverhead, ServingSpread
from .hardware import FabricSpec, GpuSpec, HardwareProfile, NvlinkSpec, PcieSpec, PriceSpec
from .model import DTYPE_BYTES, MLASpec, ModelSpec, MoESpec, compute_dtype, resolve_kv_dtype
from .topology import GpuInfo, HcaPort, NvlinkLink, NvlinkPair, Topology
from .workload import Workload

__all__ = [
    "Basis",
    "Frozen",
    "Sourced",
    "AllReduceCurve",
    "AllReduceFit",
    "Efficiency",
    "ServingSpread",
    "EngineOverhead",
    "FabricSpec",
    "NetworkAllReduce",
    "GpuSpec",
    "HardwareProfile",
    "NvlinkSpec",
    "PcieSpec",
    "PriceSpec",
    "GpuInfo",
    "HcaPort",
    "NvlinkLink",
    "NvlinkPair",
    "Topology",
    "DTYPE_BYTES",
    "MLASpec",
    "ModelSpec",
    "MoESpec",
    "Workload",
    "compute_dtype",
    "resolve_kv_dtype",
]
