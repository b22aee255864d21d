"""The NVML reader, and the fake it is tested with keeping pynvml's shape."""

from __future__ import annotations

import ctypes
import inspect

import pynvml
import pytest
from fakes import FIXTURES, FakeNvml

from tpplan.errors import ConfigError
from tpplan.topology import nvml

DGX_A100 = FIXTURES / "dgx-a100.yaml"


def public_functions(obj) -> dict:
    return {n: getattr(obj, n) for n in dir(obj) if n.startswith("nvml") and callable(getattr(obj, n))}


def test_fake_answers_only_names_pynvml_has_with_the_same_parameters():
    fake = FakeNvml.from_file(DGX_A100)
    for name, fn in public_functions(fake).items():
        assert hasattr(pynvml, name), name
        real = list(inspect.signature(getattr(pynvml, name)).parameters)
        assert list(inspect.signature(fn).parameters) == real, name


def test_fake_returns_pynvml_structures_and_raises_its_errors():
    fake = FakeNvml.from_file(DGX_A100)
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        fake.nvmlDeviceGetCount()
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    pci = fake.nvmlDeviceGetPciInfo(h)
    assert isinstance(pci, pynvml.nvmlPciInfo_t) and pci.busId == "00000000:07:00.0" and pci.bus == 7
    assert isinstance(fake.nvmlDeviceGetMemoryInfo(h), pynvml.c_nvmlMemory_t)
    assert isinstance(fake.nvmlDeviceGetCpuAffinity(h, 4), ctypes.Array)
    assert (
        fake.nvmlDeviceGetTopologyCommonAncestor(h, fake.nvmlDeviceGetHandleByIndex(1))
        == pynvml.NVML_TOPOLOGY_MULTIPLE
    )
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetNvLinkState(h, 12)  # A100 has links 0-11
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceGetNumaNodeId(h)  # x86: "GPU NUMA ID N/A"
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetHandleByIndex(8)
    field = fake.nvmlDeviceGetFieldValues(h, [pynvml.NVML_FI_DEV_NVLINK_SPEED_MBPS_COMMON])
    assert field[0].nvmlReturn == pynvml.NVML_SUCCESS and field[0].value.uiVal == 25000


def test_cpu_affinity_words_become_a_cpu_list():
    words = (ctypes.c_ulonglong * 4)()
    for cpu in [*range(48, 64), *range(176, 192), 200]:
        words[cpu // 64] |= 1 << (cpu % 64)
    assert nvml.cpu_list(words) == "48-63,176-191,200"
    assert nvml.cpu_list((ctypes.c_ulonglong * 1)()) == ""


@pytest.mark.parametrize(
    ("bus_id", "bdf"),
    [
        ("00000000:07:00.0", "0000:07:00.0"),
        ("00000000:BD:00.0", "0000:bd:00.0"),
        ("0000:0c:00.1", "0000:0c:00.1"),
        ("00000008:00:00.0", "0008:00:00.0"),
        ("07:00.0", "0000:07:00.0"),
    ],
)
def test_nvml_bus_ids_map_to_sysfs_names(bus_id, bdf):
    assert nvml.sysfs_bdf(bus_id) == bdf


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("NVML_ERROR_LIBRARY_NOT_FOUND", "libnvidia-ml.so.1 is not installed"),
        ("NVML_ERROR_DRIVER_NOT_LOADED", "kernel driver is not loaded"),
        ("NVML_ERROR_LIB_RM_VERSION_MISMATCH", "different versions"),
        ("NVML_ERROR_NO_PERMISSION", "no permission"),
        ("NVML_ERROR_UNKNOWN", "Unknown Error"),
    ],
)
def test_init_failures_say_what_and_why(code, words):
    fake = FakeNvml.from_file(DGX_A100)
    fake.m["init_error"] = code
    with pytest.raises(nvml.NvmlUnavailable, match=f"nvmlInit failed with {code}: .*{words}"):
        nvml.read(fake)


def test_no_gpu_at_all_is_unavailable_not_an_empty_profile():
    fake = FakeNvml({"nvml": {"driver": "550.54.15", "gpus": []}})
    with pytest.raises(nvml.NvmlUnavailable, match="reports no GPU"):
        nvml.read(fake)
    lost = FakeNvml.from_file(DGX_A100, errors={"nvmlDeviceGetHandleByIndex": "NVML_ERROR_GPU_IS_LOST"})
    with pytest.raises(nvml.NvmlUnavailable, match="none answers.*GPU is lost"):
        nvml.read(lost)


def test_reader_shuts_nvml_down_and_counts_links():
    fake = FakeNvml.from_file(DGX_A100)
    reading = nvml.read(fake)
    assert not fake.initialized and fake.calls[-1] == "nvmlShutdown"
    assert reading.driver_version == "535.161.08"
    assert [(g.nvlinks_active, g.nvlinks_total) for g in reading.gpus] == [(12, 12)] * 8
    assert reading.gpus[0].mig_mode == "disabled" and reading.gpus[0].memory_mib == 81920
    assert reading.gpus[0].numa_node is None  # NVML has none on x86; sysfs supplies it


def test_gpu_without_nvlink_or_mig_is_not_an_error():
    reading = nvml.read(FakeNvml.from_file(FIXTURES / "l40s-8x-pcie.yaml"))
    assert reading.errors == [] and reading.links == []
    assert reading.gpus[0].mig_mode is None and reading.gpus[0].nvlinks_total == 0


def test_missing_functions_of_an_older_pynvml_are_absent_features():
    fake = FakeNvml.from_file(DGX_A100)
    fake.nvmlDeviceGetNvLinkRemoteDeviceType = None  # as if nvidia-ml-py predated it
    reading = nvml.read(fake)
    assert reading.errors == [] and {k.remote_kind for k in reading.links} == {"nvswitch"}


def test_fake_hook_needs_an_existing_fixture(tmp_path):
    with pytest.raises(ConfigError, match="no such fixture"):
        nvml.load({nvml.FAKE_ENV: str(tmp_path / "missing.yaml")})
    fake = nvml.load({nvml.FAKE_ENV: str(DGX_A100)})
    assert (
        type(fake).__name__ == "FakeNvml"
        and fake.nvmlDeviceGetNvLinkState.__name__ == "nvmlDeviceGetNvLinkState"
    )
