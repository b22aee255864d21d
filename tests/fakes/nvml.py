"""A fake of nvidia-ml-py's `pynvml`, driven by a fixture that reproduces a real machine.

It answers pynvml's function names with pynvml's argument lists and return shapes: the
ctypes structures come from pynvml itself (nvmlPciInfo_t with a bytes busId, c_nvmlMemory_t,
c_ulonglong CPU-set arrays, c_nvmlFieldValue_t arrays), errors are the real
`pynvml.NVMLError` subclasses with their codes, and every NVML_* constant is pynvml's own.
It keeps NVML's rules: calls before nvmlInit raise Uninitialized; asking for a link past a
GPU's last raises InvalidArgument; NVLink calls on a GPU without NVLink raise NotSupported.

Fixture (YAML, tests/fixtures/topology/*.yaml), section `nvml`:
    init_error: NVML_ERROR_...         nvmlInit raises it (the machine's driver is broken)
    driver, gpus: [{name, uuid, bus_id, pci_device_id, memory_mib, cpu_affinity, mig, pcie}]
    nvlink: {version, speed_mbps, switches: {sw0: bus id}, links: [[sw0 | gpuN per link]], down: ["gpu:link"]}
    pcie: ["X PXB SYS ...", ...]        nvmlDeviceGetTopologyCommonAncestor, as topo -m words
    errors: {"fn" | "fn:gpu" | "fn:gpu:link": NVML_ERROR_...}
A fixture may name `extends: other.yaml`; mappings merge into the other's, lists replace.

Used by tests directly (`FakeNvml.from_file(path)`) and by the CLI through the test-only
environment variable TPPLAN_FAKE_NVML=<fixture> (see tpplan/topology/nvml.py).
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import pynvml
import yaml

WORDS = {
    "PIX": "NVML_TOPOLOGY_SINGLE",
    "PXB": "NVML_TOPOLOGY_MULTIPLE",
    "PHB": "NVML_TOPOLOGY_HOSTBRIDGE",
    "NODE": "NVML_TOPOLOGY_NODE",
    "SYS": "NVML_TOPOLOGY_SYSTEM",
}


def load_fixture(path: Path) -> dict:
    path = Path(path)
    data = yaml.safe_load(path.read_text())
    base = data.pop("extends", None)
    return _merge(load_fixture(path.parent / base), data) if base else data


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in over.items()}}
    return over


class Handle:
    """Stands for pynvml's c_nvmlDevice_t: opaque, one per GPU index."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"<fake nvmlDevice {self.index}>"


class FakeNvml:
    def __init__(self, fixture: dict, errors: dict[str, str] | None = None) -> None:
        for name, value in vars(pynvml).items():
            if name.startswith(("NVML_", "NVMLError")):
                setattr(self, name, value)
        self.fixture = fixture
        self.m = fixture.get("nvml", {})
        self.errors = {**self.m.get("errors", {}), **(errors or {})}
        self.initialized = False
        self.calls: list[str] = []

    @classmethod
    def from_file(cls, path: Path, errors: dict[str, str] | None = None) -> FakeNvml:
        return cls(load_fixture(path), errors)

    # ---- plumbing -------------------------------------------------------------------------
    def _fail(self, code: str) -> None:
        raise pynvml.NVMLError(getattr(pynvml, code))

    def _enter(self, fn: str, handle: Handle | None = None, link: int | None = None) -> dict | None:
        self.calls.append(fn)
        if not self.initialized:
            self._fail("NVML_ERROR_UNINITIALIZED")
        keys = [fn]
        if handle is not None:
            keys.append(f"{fn}:{handle.index}")
            if link is not None:
                keys.append(f"{fn}:{handle.index}:{link}")
        for key in reversed(keys):
            if key in self.errors:
                self._fail(self.errors[key])
        return self.m["gpus"][handle.index] if handle is not None else None

    def _links(self, handle: Handle, link: int) -> list[str]:
        nv = self.m.get("nvlink")
        if not nv:
            self._fail("NVML_ERROR_NOT_SUPPORTED")
        links = nv["links"][handle.index]
        if not 0 <= link < len(links):
            self._fail("NVML_ERROR_INVALID_ARGUMENT")
        return links

    def _active(self, handle: Handle, link: int) -> bool:
        self._links(handle, link)
        return f"{handle.index}:{link}" not in self.m["nvlink"].get("down", [])

    @staticmethod
    def _pci(bus_id: str, device_id: int = 0) -> pynvml.nvmlPciInfo_t:
        domain, bus, devfn = bus_id.split(":")
        info = pynvml.nvmlPciInfo_t()
        info.busId = info.busIdLegacy = bus_id.encode()
        info.domain, info.bus, info.device = int(domain, 16), int(bus, 16), int(devfn.split(".")[0], 16)
        info.pciDeviceId = device_id
        return info

    # ---- library --------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")
        if self.m.get("init_error"):
            self._fail(self.m["init_error"])
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialized = False

    def nvmlErrorString(self, result: int) -> str:
        return pynvml.NVMLError._errcode_to_string.get(result, f"NVML Error with code {result}")

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.m["driver"]

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.m.get("gpus", []))

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Handle:
        handle = Handle(index)
        if not 0 <= index < len(self.m.get("gpus", [])):
            self._enter("nvmlDeviceGetHandleByIndex")
            self._fail("NVML_ERROR_INVALID_ARGUMENT")
        self._enter("nvmlDeviceGetHandleByIndex", handle)
        return handle

    # ---- one GPU --------------------------------------------------------------------------
    def nvmlDeviceGetName(self, handle: Handle) -> str:
        return self._enter("nvmlDeviceGetName", handle)["name"]

    def nvmlDeviceGetUUID(self, handle: Handle) -> str:
        return self._enter("nvmlDeviceGetUUID", handle)["uuid"]

    def nvmlDeviceGetMemoryInfo(self, handle: Handle, version: int | None = None) -> pynvml.c_nvmlMemory_t:
        gpu = self._enter("nvmlDeviceGetMemoryInfo", handle)
        mem = pynvml.c_nvmlMemory_t()
        mem.total = gpu["memory_mib"] * 2**20
        mem.used = 0
        mem.free = mem.total
        return mem

    def nvmlDeviceGetPciInfo(self, handle: Handle) -> pynvml.nvmlPciInfo_t:
        gpu = self._enter("nvmlDeviceGetPciInfo", handle)
        return self._pci(gpu["bus_id"], gpu.get("pci_device_id", 0))

    def nvmlDeviceGetNumaNodeId(self, handle: Handle) -> int:
        # NVML's node of the GPU's own memory: only coherent systems (Grace Hopper) have one;
        # on x86 `nvidia-smi topo -m` shows "GPU NUMA ID  N/A".
        gpu = self._enter("nvmlDeviceGetNumaNodeId", handle)
        if gpu.get("gpu_numa_id") is None:
            self._fail("NVML_ERROR_NOT_SUPPORTED")
        return gpu["gpu_numa_id"]

    def nvmlDeviceGetCpuAffinity(self, handle: Handle, cpuSetSize: int) -> ctypes.Array:
        gpu = self._enter("nvmlDeviceGetCpuAffinity", handle)
        words = (ctypes.c_ulonglong * cpuSetSize)()
        for part in gpu["cpu_affinity"].split(","):
            lo, _, hi = part.partition("-")
            for cpu in range(int(lo), int(hi or lo) + 1):
                words[cpu // 64] |= 1 << (cpu % 64)
        return words

    def nvmlDeviceGetMigMode(self, device: Handle) -> list[int]:
        gpu = self._enter("nvmlDeviceGetMigMode", device)
        if gpu.get("mig") is None:
            self._fail("NVML_ERROR_NOT_SUPPORTED")
        return list(gpu["mig"])

    def nvmlDeviceGetMaxPcieLinkGeneration(self, handle: Handle) -> int:
        return self._enter("nvmlDeviceGetMaxPcieLinkGeneration", handle)["pcie"][0]

    def nvmlDeviceGetMaxPcieLinkWidth(self, handle: Handle) -> int:
        return self._enter("nvmlDeviceGetMaxPcieLinkWidth", handle)["pcie"][1]

    def nvmlDeviceGetTopologyCommonAncestor(self, device1: Handle, device2: Handle) -> int:
        self._enter("nvmlDeviceGetTopologyCommonAncestor", device1)
        self._enter("nvmlDeviceGetTopologyCommonAncestor", device2)
        word = self.m["pcie"][device1.index].split()[device2.index]
        if word == "X":
            self._fail("NVML_ERROR_INVALID_ARGUMENT")
        return getattr(pynvml, WORDS[word])

    # ---- NVLink ---------------------------------------------------------------------------
    def nvmlDeviceGetNvLinkState(self, device: Handle, link: int) -> int:
        self._enter("nvmlDeviceGetNvLinkState", device, link)
        return pynvml.NVML_FEATURE_ENABLED if self._active(device, link) else pynvml.NVML_FEATURE_DISABLED

    def nvmlDeviceGetNvLinkVersion(self, device: Handle, link: int) -> int:
        self._enter("nvmlDeviceGetNvLinkVersion", device, link)
        self._links(device, link)
        return self.m["nvlink"]["version"]

    def _remote(self, device: Handle, link: int) -> str:
        if not self._active(device, link):
            self._fail("NVML_ERROR_NOT_SUPPORTED")  # an inactive link has no remote end
        return self._links(device, link)[link]

    def nvmlDeviceGetNvLinkRemotePciInfo(self, device: Handle, link: int) -> pynvml.nvmlPciInfo_t:
        self._enter("nvmlDeviceGetNvLinkRemotePciInfo", device, link)
        remote = self._remote(device, link)
        if remote.startswith("gpu"):
            gpu = self.m["gpus"][int(remote[3:])]
            return self._pci(gpu["bus_id"], gpu.get("pci_device_id", 0))
        return self._pci(self.m["nvlink"]["switches"][remote])

    def nvmlDeviceGetNvLinkRemoteDeviceType(self, handle: Handle, link: int) -> int:
        self._enter("nvmlDeviceGetNvLinkRemoteDeviceType", handle, link)
        remote = self._remote(handle, link)
        return (
            pynvml.NVML_NVLINK_DEVICE_TYPE_GPU
            if remote.startswith("gpu")
            else pynvml.NVML_NVLINK_DEVICE_TYPE_SWITCH
        )

    def nvmlDeviceGetNvLinkCapability(self, device: Handle, link: int, capability: int) -> int:
        self._enter("nvmlDeviceGetNvLinkCapability", device, link)
        self._links(device, link)
        return 1  # P2P, system memory access and atomics are supported on data-center NVLink

    def nvmlDeviceGetFieldValues(self, handle: Handle, fieldIds: list) -> ctypes.Array:
        self._enter("nvmlDeviceGetFieldValues", handle)
        values = (pynvml.c_nvmlFieldValue_t * len(fieldIds))()
        for i, field_id in enumerate(fieldIds):
            values[i].fieldId = field_id
            nv = self.m.get("nvlink")
            if field_id == pynvml.NVML_FI_DEV_NVLINK_SPEED_MBPS_COMMON and nv and nv.get("speed_mbps"):
                values[i].nvmlReturn = pynvml.NVML_SUCCESS
                values[i].valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
                values[i].value.uiVal = nv["speed_mbps"]
            else:
                values[i].nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return values
