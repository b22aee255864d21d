"""Kernel time as a function of shape, from per-GPU microbenchmark tables (tpplan/data/kernels/).

A small GEMM or a short decode batch runs far below the GPU's peak: an m=1 GEMM is bound by reading
its weights and by launch latency, a decode attention over a few hundred tokens by its launch floor.
The tables (achieved TFLOP/s by GEMM shape, achieved KV-read GB/s by decode batch x context, prefill
attention TFLOP/s by length) were measured on each GPU through vLLM's kernels and published in NVIDIA's
aiconfigurator-core wheel; scripts/derive_kernel_tables.py derived them. Between grid points the
achieved rate is interpolated linearly in log-log space (so time is too); outside the grid it is held
at the edge (a GEMM larger than any measured one runs at the largest one's rate).

A GPU without its own table (gpus.json names which it borrows) scales the borrowed table op by op:
by the ratio of rated FLOP/s when the op is compute-bound on the table's GPU, else of rated bandwidth.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..specs import HardwareProfile

DATA = Path(__file__).resolve().parent.parent / "data" / "kernels"
DTYPE_BYTES = {"bf16": 2, "fp8": 1}


@cache
def load_table(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


@cache
def gpu_index() -> dict[str, dict]:
    return json.loads((DATA / "gpus.json").read_text())["gpus"]


# The tables are loaded once (load_table is cached) and interpolated millions of times in a search:
# their logs are taken once per list, keyed by its id (the lists live as long as the cache).
_LOGS: dict[int, tuple[object, list]] = {}


def _logs(values: list) -> list:
    """`values` (a nested list of positive numbers) with every number replaced by its log, memoized."""
    found = _LOGS.get(id(values))
    if found is None or found[0] is not values:
        logs = [_logs(v) if isinstance(v, list) else math.log(v) for v in values]
        found = _LOGS[id(values)] = (values, logs)
    return found[1]


def _bracket(axis: list[float], log_axis: list[float], x: float) -> tuple[int, int, float]:
    """Indices either side of x on a log axis and the weight of the upper one (held at the ends)."""
    if x <= axis[0]:
        return 0, 0, 0.0
    if x >= axis[-1]:
        return len(axis) - 1, len(axis) - 1, 0.0
    hi = bisect.bisect_right(axis, x)
    lo = hi - 1
    return lo, hi, (math.log(x) - log_axis[lo]) / (log_axis[hi] - log_axis[lo])


def _log_interpolate(axes: list[list[float]], values: list, point: tuple[float, ...]) -> float:
    brackets = [_bracket(a, _logs(a), x) for a, x in zip(axes, point, strict=True)]
    total = 0.0
    for corner in range(1 << len(axes)):
        node, weight = _logs(values), 1.0
        for d, (lo, hi, w) in enumerate(brackets):
            upper = corner >> d & 1
            weight *= w if upper else 1 - w
            node = node[hi if upper else lo]
        if weight:
            total += weight * node
    return total


def interpolate(axes: list[list[float]], values: list, *, point: tuple[float, ...]) -> float:
    """Multilinear interpolation of log(value) over log(axes): a grid of positive rates."""
    return math.exp(_log_interpolate(axes, values, point))


_CURVES: dict[tuple, list[float]] = {}


def interpolate_along(axes: list[list[float]], values: list, *, point: tuple[float, ...], dim: int) -> float:
    """`interpolate`, for a point whose other coordinates repeat while the one on axis `dim` varies
    (a GEMM's m, a decode batch): multilinear interpolation is a tensor product, so the rest is done
    once per fixed part (log values at each grid point of `dim`, cached) and each call is 1-D."""
    key = (id(values), dim, *point[:dim], *point[dim + 1 :])
    curve = _CURVES.get(key)
    if curve is None:
        at = list(point)
        curve = []
        for x in axes[dim]:
            at[dim] = x
            curve.append(_log_interpolate(axes, values, tuple(at)))
        _CURVES[key] = curve
    lo, hi, w = _bracket(axes[dim], _logs(axes[dim]), point[dim])
    return math.exp((1 - w) * curve[lo] + w * curve[hi] if w else curve[lo])


@dataclass(frozen=True)
class KernelTables:
    """One GPU's kernel curves, possibly borrowed from a neighbour and scaled."""

    name: str
    table: dict
    flops_scale: dict[str, float]  # by dtype: profile peak / table GPU's peak (1 for its own table)
    bw_scale: float
    basis: str  # measured (the GPU's own table) | derived (a neighbour's, scaled)
    source: str

    def _scaled(self, t_ms: float, flops: float, nbytes: float, dtype: str) -> float:
        if self.basis == "measured":
            return t_ms
        peaks = self.table["peaks"]
        peak = peaks["fp8_dense_tflops"] if dtype == "fp8" and peaks["fp8_dense_tflops"] else None
        peak = peak or peaks["bf16_dense_tflops"]
        compute_bound = flops / (peak * 1e9) >= nbytes / (peaks["hbm_gbps"] * 1e6)
        return t_ms / (self.flops_scale[dtype] if compute_bound else self.bw_scale)

    def gemm_dtype(self, weight_dtype: str) -> str | None:
        """The table that serves a weight dtype: fp8 where measured, else bf16 (fp8 weights on a GPU
        without fp8 kernels run as bf16 GEMMs); None for dtypes no table covers (fp32)."""
        if weight_dtype == "fp8" and "fp8" in self.table["gemm"]:
            return "fp8"
        return "bf16" if weight_dtype in ("bf16", "fp16", "fp8") else None

    def gemm_ms(self, m: float, n: int, *, k: int, dtype: str) -> float:
        """One (m x k) @ (k x n) product: m tokens, n output features, k input features."""
        if m <= 0:
            return 0.0
        g = self.table["gemm"][dtype]
        m_eff = max(m, 1.0)  # a fraction of a token (a mean batch) costs what one does
        tflops = interpolate_along([g["m"], g["n"], g["k"]], g["tflops"], point=(m_eff, n, k), dim=0)
        flops = 2 * m_eff * n * k
        nbytes = n * k * DTYPE_BYTES[dtype] + 2 * m_eff * (n + k)
        return self._scaled(flops / (tflops * 1e9), flops, nbytes, dtype) * m / m_eff

    def decode_attention_ms(
        self, nbytes: float, batch: float, *, context: float, kv_heads: int, kv: str
    ) -> float:
        """Reading `nbytes` of KV cache for `batch` sequences of `context` tokens (one layer)."""
        if nbytes <= 0 or batch <= 0:
            return 0.0
        tables = self.table["decode_attention"]
        d = tables.get(kv) or tables["bf16"]
        point = (float(kv_heads), max(batch, 1.0), max(context, 2.0))
        gbps = interpolate_along([d["kv_heads"], d["batch"], d["context"]], d["gbps"], point=point, dim=1)
        return self._scaled(nbytes / (gbps * 1e6), 0.0, nbytes, "bf16")

    def prefill_attention_ms(self, flops: float, heads: int, *, length: float) -> float:
        """Causal attention of `flops` over prompts of `length` tokens with `heads` query heads (one layer)."""
        if flops <= 0:
            return 0.0
        p = self.table["prefill_attention"]
        tflops = interpolate_along(
            [p["heads"], p["isl"]], p["tflops"], point=(float(heads), max(length, 1.0)), dim=1
        )
        return self._scaled(flops / (tflops * 1e9), flops, 0.0, "bf16")


def kernel_tables(profile: HardwareProfile) -> KernelTables | None:
    """The kernel curves for the profile's GPU, or None (CPU ranks; GPUs no table covers)."""
    if profile.backend == "gloo":
        return None
    entry = next((gpu_index()[n] for n in profile.gpu.nvml_names if n in gpu_index()), None)
    if entry is None:
        return None
    name = entry["table"]
    table = load_table(name)
    src = table["source"]
    where = f"{src['package']} {src['version']} ({src['license']}) kernel tables of {table['device']}"
    if "why" not in entry:
        return KernelTables(name, table, {"bf16": 1.0, "fp8": 1.0}, 1.0, "measured", where)
    gpu, peaks = profile.gpu, table["peaks"]
    bf16 = gpu.bf16_dense_tflops.value / peaks["bf16_dense_tflops"]
    fp8 = (
        gpu.fp8_dense_tflops.value / (peaks["fp8_dense_tflops"] or peaks["bf16_dense_tflops"])
        if gpu.fp8_dense_tflops
        else bf16
    )
    bw = gpu.hbm_gbps.value / peaks["hbm_gbps"]
    why = (
        f"scaled from the {name} table by the profile's peaks ({bf16:.2f}x FLOP/s, {bw:.2f}x bandwidth): "
        f"{entry['why']}; {where}"
    )
    return KernelTables(name, table, {"bf16": bf16, "fp8": fp8}, bw, "derived", why)
