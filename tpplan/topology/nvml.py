"""Reading GPUs and NVLinks through NVML (the `pynvml` module of nvidia-ml-py).

The NVML module is a parameter: `read(nvml)` takes anything that answers pynvml's function
names with pynvml's return shapes and raises `NVMLError` subclasses, so tests pass a fake.
`load()` imports pynvml lazily; the test-only environment variable TPPLAN_FAKE_NVML=<fixture>
swaps in the fake from a source checkout (tests/fakes/nvml.py) for end-to-end CLI runs.

An NVMLError on one call (a GPU that does not answer) is recorded and reading goes on;
only a failed nvmlInit (or no GPU at all) raises `NvmlUnavailable`. A call that fails leaves
its answer unknown, never "down" or "absent": a GPU without a handle, a link whose state or
remote end could not be read are kept apart (`NvmlReading.unanswered`, `state_unknown`,
`remote_unknown`) so the topology can say what it assumed about them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..specs import GpuInfo, NvlinkLink

FAKE_ENV = "TPPLAN_FAKE_NVML"

# Why nvmlInit fails, by error-code name, in words a user can act on.
INIT_REASONS = {
    "NVML_ERROR_LIBRARY_NOT_FOUND": "the NVML library libnvidia-ml.so.1 is not installed (no NVIDIA driver on this machine)",
    "NVML_ERROR_DRIVER_NOT_LOADED": "the NVIDIA kernel driver is not loaded",
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": "the NVML library and the loaded NVIDIA kernel module are different "
    "versions (driver updated without a reboot?)",
    "NVML_ERROR_NO_PERMISSION": "no permission to open the NVIDIA devices (/dev/nvidia*)",
    "NVML_ERROR_GPU_IS_LOST": "a GPU fell off the bus while NVML started",
}
# nvmlDeviceGetTopologyCommonAncestor levels → nvidia-smi topo -m words (nvml.h nvmlGpuTopologyLevel_t).
# INTERNAL is two GPUs on one board behind its own switch, which topo -m has no word for: PIX.
TOPOLOGY_WORDS = {
    "NVML_TOPOLOGY_INTERNAL": "PIX",
    "NVML_TOPOLOGY_SINGLE": "PIX",
    "NVML_TOPOLOGY_MULTIPLE": "PXB",
    "NVML_TOPOLOGY_HOSTBRIDGE": "PHB",
    "NVML_TOPOLOGY_NODE": "NODE",
    "NVML_TOPOLOGY_SYSTEM": "SYS",
}
CPU_SET_WORDS = 16  # 64-bit words of nvmlDeviceGetCpuAffinity: room for 1024 CPUs


class NvmlUnavailable(Exception):
    """NVML cannot report any GPU; the message says what was not found and why."""


def load(env: Mapping[str, str] = os.environ) -> Any:
    """The pynvml module, or the fake named by TPPLAN_FAKE_NVML (tests only)."""
    fixture = env.get(FAKE_ENV)
    if fixture:
        return _load_fake(Path(fixture))
    try:
        import pynvml  # nvidia-ml-py; imported here so `import tpplan` stays light
    except ImportError as e:
        raise NvmlUnavailable(f"the nvidia-ml-py package (pynvml) cannot be imported ({e})") from None
    return pynvml


def _load_fake(fixture: Path) -> Any:
    fake = Path(__file__).resolve().parents[2] / "tests" / "fakes" / "nvml.py"
    if not fake.is_file():
        raise ConfigError(
            "is a test hook that needs a tpplan source checkout (tests/fakes/nvml.py)", field=FAKE_ENV
        )
    if not fixture.is_file():
        raise ConfigError(
            "no such fixture file",
            file=str(fixture),
            field=FAKE_ENV,
            expected="a tests/fixtures/topology/*.yaml",
        )
    spec = importlib.util.spec_from_file_location("tpplan_fake_nvml", fake)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FakeNvml.from_file(fixture)


def error_name(nvml: Any, err: Exception) -> str:
    code = getattr(err, "value", None)
    names = [n for n in dir(nvml) if n.startswith("NVML_ERROR_") and getattr(nvml, n) == code]
    return names[0] if names else f"NVML error {code}"


class Session:
    """NVML calls that record a failure instead of raising it. NOT_SUPPORTED and
    FUNCTION_NOT_FOUND are answers (the GPU or driver lacks the feature), not failures."""

    def __init__(self, nvml: Any) -> None:
        self.nvml, self.errors = nvml, []
        self.absent = {nvml.NVML_ERROR_NOT_SUPPORTED, nvml.NVML_ERROR_FUNCTION_NOT_FOUND}

    def try_call(self, fn: str, *args: Any) -> tuple[Any, Exception | None]:
        f = getattr(self.nvml, fn, None)
        if f is None:  # an older nvidia-ml-py without this function
            return None, self.nvml.NVMLError(self.nvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        try:
            return f(*args), None
        except self.nvml.NVMLError as e:
            return None, e

    def call(self, fn: str, *args: Any, what: str) -> Any:
        return self.call_why(fn, *args, what=what)[0]

    def call_why(self, fn: str, *args: Any, what: str) -> tuple[Any, str | None]:
        """The answer, or None and "fn failed with NVML_ERROR_..." (absent features included)."""
        value, err = self.try_call(fn, *args)
        if err is None:
            return value, None
        why = f"{fn} failed with {error_name(self.nvml, err)}"
        if err.value not in self.absent:
            self.errors.append(f"{what}: {why} ({err})")
        return None, why


@dataclass
class NvmlReading:
    driver_version: str | None
    gpus: list[GpuInfo]
    links: list[NvlinkLink]
    pcie: list[list[str]]  # GPU x GPU PCIe level words, "X" on the diagonal, "?" when unknown
    errors: list[str] = field(default_factory=list)
    # Unknown answers, each with "fn failed with NVML_ERROR_...": GPU -> why it has no handle,
    # (GPU, link) -> why the link's state, or (state up) its remote end, is unknown.
    unanswered: dict[int, str] = field(default_factory=dict)
    state_unknown: dict[tuple[int, int], str] = field(default_factory=dict)
    remote_unknown: dict[tuple[int, int], str] = field(default_factory=dict)


def read(nvml: Any) -> NvmlReading:
    """Every GPU, its NVLinks and the PCIe level of every GPU pair."""
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as e:
        name = error_name(nvml, e)
        raise NvmlUnavailable(f"nvmlInit failed with {name}: {INIT_REASONS.get(name, str(e))}") from None
    try:
        return _read(Session(nvml))
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()


def _read(s: Session) -> NvmlReading:
    count = s.call("nvmlDeviceGetCount", what="NVML")
    if not count:
        why = "; ".join(s.errors) or "nvmlDeviceGetCount is 0"
        raise NvmlUnavailable(f"NVML started but reports no GPU ({why})")
    answers = [s.call_why("nvmlDeviceGetHandleByIndex", i, what=f"GPU {i}") for i in range(count)]
    handles = [h for h, _ in answers]
    if all(h is None for h in handles):
        raise NvmlUnavailable(f"NVML reports {count} GPU(s) but none answers: " + "; ".join(s.errors))
    out = NvmlReading(None, [], [], [], s.errors)
    out.unanswered = {i: why for i, (h, why) in enumerate(answers) if h is None}
    base = [_gpu(s, i, h) for i, h in enumerate(handles)]
    bus_to_gpu = {sysfs_bdf(g.pci_bus_id): g.index for g in base if g.pci_bus_id}
    for g, h in zip(base, handles, strict=True):
        mine = _links(s, g.index, h, bus_to_gpu, out) if h is not None else []
        out.links += mine
        unread = sum(gpu == g.index for gpu, _ in out.state_unknown)
        # A link whose state could not be read exists but is neither active nor down: it counts
        # in the total only, and the topology says so.
        out.gpus.append(
            g.model_copy(
                update={"nvlinks_total": len(mine) + unread, "nvlinks_active": sum(k.active for k in mine)}
            )
        )
    out.driver_version = _text(s.call("nvmlSystemGetDriverVersion", what="driver"))
    out.pcie = _pcie(s, handles)
    return out


def _gpu(s: Session, i: int, h: Any) -> GpuInfo:
    if h is None:
        return GpuInfo(index=i, name="")
    what = f"GPU {i}"
    mem = s.call("nvmlDeviceGetMemoryInfo", h, what=what)
    pci = s.call("nvmlDeviceGetPciInfo", h, what=what)
    mig = s.call("nvmlDeviceGetMigMode", h, what=what)
    affinity = s.call("nvmlDeviceGetCpuAffinity", h, CPU_SET_WORDS, what=what)
    return GpuInfo(
        index=i,
        name=_text(s.call("nvmlDeviceGetName", h, what=what)) or "",
        uuid=_text(s.call("nvmlDeviceGetUUID", h, what=what)),
        memory_mib=int(mem.total) // 2**20 if mem is not None else None,
        pci_bus_id=_text(pci.busId) if pci is not None else None,
        numa_node=_nonneg(s.call("nvmlDeviceGetNumaNodeId", h, what=what)),
        cpu_affinity=cpu_list(affinity) if affinity is not None else None,
        mig_mode=None
        if mig is None
        else ("enabled" if mig[0] == s.nvml.NVML_DEVICE_MIG_ENABLE else "disabled"),
        pcie_generation=s.call("nvmlDeviceGetMaxPcieLinkGeneration", h, what=what),
        pcie_width=s.call("nvmlDeviceGetMaxPcieLinkWidth", h, what=what),
    )


def _links(
    s: Session, gpu: int, h: Any, bus_to_gpu: dict[str, int], reading: NvmlReading
) -> list[NvlinkLink]:
    """Links 0, 1, ... until NVML says there are no more (NOT_SUPPORTED / INVALID_ARGUMENT).
    A link whose state read fails is left out (its state is unknown, not down) and noted in
    `reading.state_unknown`; an up link whose remote end cannot be read is kept, remote None,
    and noted in `reading.remote_unknown`."""
    nvml, what, out = s.nvml, f"GPU {gpu}", []
    end = {
        nvml.NVML_ERROR_NOT_SUPPORTED,
        nvml.NVML_ERROR_INVALID_ARGUMENT,
        nvml.NVML_ERROR_FUNCTION_NOT_FOUND,
    }
    speed = _link_speed_gbps(s, h, what)
    versions = {
        getattr(nvml, n): n.removeprefix("NVML_NVLINK_VERSION_").replace("_", ".")
        for n in dir(nvml)
        if n.startswith("NVML_NVLINK_VERSION_") and n != "NVML_NVLINK_VERSION_INVALID"
    }
    for link in range(nvml.NVML_NVLINK_MAX_LINKS):
        state, err = s.try_call("nvmlDeviceGetNvLinkState", h, link)
        if err is not None and err.value in end:
            break
        if err is not None:
            why = f"nvmlDeviceGetNvLinkState failed with {error_name(nvml, err)}"
            s.errors.append(f"{what} NVLink {link}: {why} ({err})")
            reading.state_unknown[(gpu, link)] = why
            continue
        if state != nvml.NVML_FEATURE_ENABLED:
            out.append(NvlinkLink(gpu=gpu, link=link, active=False))
            continue
        where = f"{what} NVLink {link}"
        pci, why = s.call_why("nvmlDeviceGetNvLinkRemotePciInfo", h, link, what=where)
        bus = _text(pci.busId) if pci is not None else None
        if bus is None:
            reading.remote_unknown[(gpu, link)] = why or "nvmlDeviceGetNvLinkRemotePciInfo gave no bus id"
        kind = None
        if bus is not None:
            kind = _remote_kind(nvml, s.call("nvmlDeviceGetNvLinkRemoteDeviceType", h, link, what=where))
            kind = "gpu" if sysfs_bdf(bus) in bus_to_gpu else kind
        out.append(
            NvlinkLink(
                gpu=gpu,
                link=link,
                active=True,
                remote_kind=kind,
                remote_bus_id=bus,
                remote_gpu=bus_to_gpu.get(sysfs_bdf(bus)) if bus else None,
                version=versions.get(s.call("nvmlDeviceGetNvLinkVersion", h, link, what=where)),
                speed_gbps=speed,
            )
        )
    return out


def _remote_kind(nvml: Any, device_type: int | None) -> str:
    """A remote that is not one of our GPUs: NVML's device type when the driver reports it;
    without it the remote is taken for an NVSwitch (the only non-GPU NVLink peer on x86)."""
    kinds = {
        nvml.NVML_NVLINK_DEVICE_TYPE_GPU: "gpu",
        nvml.NVML_NVLINK_DEVICE_TYPE_SWITCH: "nvswitch",
        nvml.NVML_NVLINK_DEVICE_TYPE_IBMNPU: "cpu",
    }
    return "nvswitch" if device_type is None else kinds.get(device_type, "unknown")


def _link_speed_gbps(s: Session, h: Any, what: str) -> float | None:
    """NVML_FI_DEV_NVLINK_SPEED_MBPS_COMMON: the per-direction rate of every link, MB/s
    (`nvidia-smi nvlink -s` prints it /1000: 25 GB/s on A100, 26.562 on H100)."""
    values = s.call("nvmlDeviceGetFieldValues", h, [s.nvml.NVML_FI_DEV_NVLINK_SPEED_MBPS_COMMON], what=what)
    if not values or values[0].nvmlReturn != s.nvml.NVML_SUCCESS:
        return None
    member = {
        s.nvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
        s.nvml.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
        s.nvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
        s.nvml.NVML_VALUE_TYPE_DOUBLE: "dVal",
    }
    mbps = getattr(values[0].value, member.get(values[0].valueType, "uiVal"))
    return round(mbps / 1000, 3) if mbps else None


def _pcie(s: Session, handles: list[Any]) -> list[list[str]]:
    words = {getattr(s.nvml, k): v for k, v in TOPOLOGY_WORDS.items() if hasattr(s.nvml, k)}
    n = len(handles)
    cells = [["X" if i == j else "?" for j in range(n)] for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if handles[i] is None or handles[j] is None:
                continue
            level = s.call(
                "nvmlDeviceGetTopologyCommonAncestor", handles[i], handles[j], what=f"GPU {i} - GPU {j}"
            )
            cells[i][j] = cells[j][i] = words.get(level, "?")
    return cells


def cpu_list(words: Any) -> str:
    """nvmlDeviceGetCpuAffinity's 64-bit words → '48-63,176-191' (bit b of word w is CPU 64w + b)."""
    cpus = [64 * w + b for w, word in enumerate(words) for b in range(64) if int(word) >> b & 1]
    runs: list[list[int]] = []
    for c in cpus:
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _nonneg(value: int | None) -> int | None:
    return value if value is not None and value >= 0 else None


def sysfs_bdf(bus_id: str) -> str:
    """NVML's '00000000:07:00.0' → sysfs's '0000:07:00.0' (4-digit domain, lower case); one key
    for matching NVLink remotes to GPUs and for finding a GPU under /sys/bus/pci/devices."""
    parts = bus_id.strip().lower().split(":")
    domain = parts[0] if len(parts) == 3 else "0"
    return f"{int(domain, 16):04x}:{parts[-2]}:{parts[-1]}"
