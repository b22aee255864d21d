"""Timing the nccl-tests way: clocks, sample summaries and bus bandwidth.

On CPU a mark is `time.perf_counter()`; on GPU it is a recorded CUDA event, read after one
synchronize at the end of the step (so marks never stall the stream). NVML utilization is
sampled on GPU only. torch and pynvml are imported only by the GPU pieces.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any


class CpuClock:
    def mark(self) -> float:
        return time.perf_counter()

    def sync(self) -> None:
        pass

    @staticmethod
    def ms(a: float, b: float) -> float:
        return (b - a) * 1e3


class CudaClock:
    """CUDA events on the current stream; `ms` is valid after `sync()`."""

    def __init__(self) -> None:
        import torch

        self._torch = torch

    def mark(self) -> Any:
        event = self._torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def sync(self) -> None:
        self._torch.cuda.synchronize()

    @staticmethod
    def ms(a: Any, b: Any) -> float:
        return a.elapsed_time(b)


def clock_for(device_type: str) -> CpuClock | CudaClock:
    return CudaClock() if device_type == "cuda" else CpuClock()


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(values: list[float]) -> dict[str, float]:
    """p50/p99/min/max/cv of samples, as the `Stats` record holds them."""
    mean = statistics.fmean(values)
    sd = statistics.pstdev(values) if len(values) > 1 else 0.0
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "min": min(values),
        "max": max(values),
        "cv": sd / mean if mean else 0.0,
        "n": len(values),
    }


def algbw_gbps(nbytes: int, latency_us: float) -> float:
    """Bytes moved per second of the operation, GB/s (nccl-tests algbw = S / t)."""
    return nbytes / (latency_us * 1e-6) / 1e9 if latency_us > 0 else 0.0


def bus_bandwidth_gbps(algbw: float, n: int) -> float:
    """All-reduce bus bandwidth = algbw · 2(n−1)/n: what each link carries in a ring (nccl-tests
    doc/PERFORMANCE.md), comparable across group sizes and with the hardware's link speed."""
    return algbw * 2 * (n - 1) / n


class NvmlSampler:
    """Samples one GPU's utilization (%) every `period_s` between start() and stop() (GPU only)."""

    def __init__(self, device_index: int, period_s: float = 0.05, nvml: Any = None) -> None:
        self.period_s, self.samples = period_s, []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            if nvml is None:
                import pynvml as nvml
            nvml.nvmlInit()
            self._nvml, self._handle = nvml, nvml.nvmlDeviceGetHandleByIndex(device_index)
        except Exception:  # no driver or no pynvml: utilization is simply not reported
            self._nvml = self._handle = None

    def start(self) -> None:
        if self._handle is None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(float(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu))
            self._stop.wait(self.period_s)

    def stop(self) -> float | None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        return statistics.fmean(self.samples) if self.samples else None
