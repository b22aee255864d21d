"""Sample statistics and bandwidths as nccl-tests defines them; the NVML sampler through a fake."""

from __future__ import annotations

import statistics
import time
from types import SimpleNamespace

import pytest

from tpplan.sweep.timing import CpuClock, NvmlSampler, algbw_gbps, bus_bandwidth_gbps, percentile, summarize


def test_percentile_interpolates_like_numpy():
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 5.0
    assert percentile([1.0, 2.0], 99) == pytest.approx(1.99)  # numpy.percentile([1, 2], 99)


def test_summary_has_the_fields_of_the_record():
    values = [10.0, 12.0, 11.0, 30.0]
    s = summarize(values)
    assert (s["min"], s["max"], s["n"]) == (10.0, 30.0, 4)
    assert s["p50"] == 11.5
    assert s["cv"] == pytest.approx(statistics.pstdev(values) / statistics.fmean(values))
    assert summarize([2.0])["cv"] == 0.0


def test_busbw_is_algbw_times_2_n_minus_1_over_n():
    # nccl-tests doc/PERFORMANCE.md: 1 GB in 10 ms is 100 GB/s algbw; on 8 ranks busbw = 175 GB/s
    alg = algbw_gbps(10**9, 10_000)
    assert alg == pytest.approx(100.0)
    assert bus_bandwidth_gbps(alg, 8) == pytest.approx(175.0)
    assert bus_bandwidth_gbps(alg, 2) == pytest.approx(alg)


def test_cpu_clock_measures_milliseconds():
    c = CpuClock()
    a = c.mark()
    time.sleep(0.01)
    assert c.ms(a, c.mark()) >= 9.0


class FakeNvml:
    """nvidia-ml-py's names and return shapes: nvmlInit, a handle by index, utilization with .gpu/.memory."""

    def __init__(self, util: int, fail: bool = False) -> None:
        self.util, self.fail, self.handles = util, fail, []

    def nvmlInit(self) -> None:
        if self.fail:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlDeviceGetHandleByIndex(self, index: int):
        self.handles.append(index)
        return f"handle{index}"

    def nvmlDeviceGetUtilizationRates(self, handle):
        return SimpleNamespace(gpu=self.util, memory=10)


def test_nvml_sampler_averages_utilization_while_running():
    nvml = FakeNvml(util=87)
    s = NvmlSampler(3, period_s=0.001, nvml=nvml)
    s.start()
    time.sleep(0.02)
    assert s.stop() == 87.0
    assert nvml.handles == [3] and len(s.samples) >= 1


def test_nvml_sampler_without_a_driver_reports_nothing():
    s = NvmlSampler(0, nvml=FakeNvml(50, fail=True))
    s.start()
    assert s.stop() is None
