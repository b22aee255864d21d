"""Derive compact per-GPU kernel-efficiency tables from NVIDIA's aiconfigurator-core kernel microbenchmarks.

    pip download --no-deps aiconfigurator-core==0.12.0 -d /tmp/aic && unzip -q /tmp/aic/*.whl -d /tmp/aic/x
    pip install --target /tmp/pa pyarrow          # the tables are parquet; tpplan itself does not need pyarrow
    PYTHONPATH=/tmp/pa .venv/bin/python scripts/derive_kernel_tables.py /tmp/aic/x/aiconfigurator_core

Source: the PyPI wheel `aiconfigurator-core` 0.12.0 (Apache-2.0, NVIDIA), files
  systems/<system>.yaml                                          the GPU's peak numbers (published datasheet values)
  systems/data/<system>/gemm/vllm/<v>/gemm_perf.parquet           GEMM latency by (m, n, k, dtype)
  systems/data/<system>/attention/vllm/<v>/generation_attention_perf.parquet   decode attention latency
  systems/data/<system>/attention/vllm/<v>/context_attention_perf.parquet      prefill attention latency
(kernel microbenchmarks run through vLLM's kernels on the named GPU; the newest vLLM version present).
Nothing else in the wheel is read: its end-to-end serving samples (systems/silicon_sample.csv) are
reserved for independent evaluation and must not be read, fitted or tested against.

Written to tpplan/data/kernels/<system>.json, each a few tens of KB:
  gemm[dtype]          achieved TFLOP/s on a log grid of m (tokens) x n (output features) x k (input features)
  decode_attention[kv] achieved KV-read GB/s on a grid of kv heads per rank x batch x context (head_dim 128,
                       4 query heads per KV head)
  prefill_attention    achieved TFLOP/s (causal, 2·heads·head_dim·isl² FLOPs) by query heads per rank x prompt
                       length, batch 1, head_dim 128, bf16
Three corrections, each counted in the output's `source.corrections`:
- a cell the benchmark did not run (shapes too large for memory) takes the nearest measured cell along
  m (GEMM), context (decode) or length (prefill): the curves are flat there;
- a GEMM cell slower than the next larger m (cuBLAS picking a worse kernel for m=1 than for m=2) takes
  the larger one's time: fewer rows can always run padded;
- a cell whose implied memory traffic exceeds the GPU's rated bandwidth was served from L2 in the
  benchmark's repeated runs (a 33 MB KV cache on a 96 MB-L2 L40S); a served model reads each layer's
  weights and KV once per step, so the cell is capped at the rated bandwidth.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tpplan" / "data" / "kernels"
PACKAGE, VERSION, LICENSE = "aiconfigurator-core", "0.12.0", "Apache-2.0"
SYSTEMS = ("h100_sxm", "h200_sxm", "a100_sxm", "b200_sxm", "gb200", "l40s")
FRAMEWORK = "vllm"

M = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]
NK = [64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536]
KV_HEADS = [1, 2, 4, 8]
BATCH = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
CONTEXT = [2**i for i in range(1, 18)]  # tokens attended: the table's `step` + 1 (2 .. 131072)
Q_HEADS = [(8, 2), (16, 4), (32, 8), (64, 8)]  # (query heads, kv heads) per rank
ISL = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]
HEAD_DIM = 128
DTYPE_NAMES = {"bfloat16": "bf16", "fp8": "fp8"}
KV_BYTES = {"bfloat16": 2, "fp8": 1}  # bytes per element (also of GEMM weights)


def _read(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _newest(d: Path) -> Path:
    return max(d.iterdir(), key=lambda p: tuple(int(x) for x in p.name.split(".") if x.isdigit()))


def _sig(x: float) -> float:
    return float(f"{x:.3g}")


def _fill(line: list[float | None]) -> tuple[list[float | None], int]:
    """Nulls along one axis take the nearest measured value (ties: the smaller index)."""
    known = [i for i, v in enumerate(line) if v is not None]
    if not known:
        return line, 0
    out = [
        v if v is not None else line[min(known, key=lambda j: (abs(j - i), j))] for i, v in enumerate(line)
    ]
    return out, sum(v is None for v in line)


def _main_kernel(rows: list[dict], dtype_key: str, dtype: str) -> str:
    """The kernel vLLM runs for this dtype: the one benchmarked on the most shapes."""
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        if r[dtype_key] == dtype:
            counts[r["kernel_source"]] += 1
    return max(counts, key=counts.get)


class Counts(dict):
    def bump(self, key: str, n: int = 1) -> None:
        self[key] = self.get(key, 0) + n


def gemm_tables(path: Path, peak_gbps: float, counts: Counts) -> tuple[dict, dict]:
    rows = _read(path)
    out, kernels = {}, {}
    for dtype, name in DTYPE_NAMES.items():
        if not any(r["gemm_dtype"] == dtype for r in rows):
            continue
        kernel = _main_kernel(rows, "gemm_dtype", dtype)
        lat: dict[tuple[int, int, int], list[float]] = defaultdict(list)
        for r in rows:
            if r["gemm_dtype"] == dtype and r["kernel_source"] == kernel:
                lat[(r["m"], r["n"], r["k"])].append(r["latency"])

        def tflops(m: int, n: int, k: int, lat=lat, dtype=dtype, name=name) -> float | None:
            if (m, n, k) not in lat:
                return None
            ms = min(lat[(m, n, k)])
            traffic = n * k * KV_BYTES[dtype] + 2 * (m * k + m * n)  # weights once, bf16 activations
            floor = traffic / (peak_gbps * 1e9) * 1e3
            if ms < floor:
                counts.bump(f"gemm.{name} capped at rated bandwidth")
                ms = floor
            return _sig(2 * m * n * k / (ms * 1e-3) / 1e12)

        grid = [[[tflops(m, n, k) for k in NK] for n in NK] for m in M]
        for j in range(len(NK)):  # fill along m
            for i in range(len(NK)):
                line, filled = _fill([grid[a][j][i] for a in range(len(M))])
                counts.bump(f"gemm.{name} cells filled from the nearest m", filled)
                for a in range(len(M)):
                    grid[a][j][i] = line[a]
        for a in range(len(M)):  # then along k (n = k = 65536 was never run)
            for j in range(len(NK)):
                grid[a][j], filled = _fill(grid[a][j])
                counts.bump(f"gemm.{name} cells filled from the nearest k", filled)
        for j in range(len(NK)):  # a GEMM of fewer rows can always run as a larger one, padded
            for i in range(len(NK)):
                for a in range(len(M) - 2, -1, -1):
                    t_here, t_next = M[a] / grid[a][j][i], M[a + 1] / grid[a + 1][j][i]
                    if t_here > t_next:
                        grid[a][j][i] = _sig(M[a] / t_next)
                        counts.bump(f"gemm.{name} cells raised to the next larger m's time")
        out[name] = {"m": M, "n": NK, "k": NK, "tflops": grid}
        kernels[name] = kernel
    return out, kernels


def decode_tables(path: Path, peak_gbps: float, counts: Counts) -> tuple[dict, str]:
    rows = [
        r for r in _read(path) if r.get("window_size", 0) == 0 and r["head_dim"] == HEAD_DIM and r["isl"] == 1
    ]
    kernel = _main_kernel(rows, "attn_dtype", "bfloat16")
    out = {}
    for kv_dtype, name in DTYPE_NAMES.items():
        lat: dict[tuple[int, int, int], list[float]] = defaultdict(list)
        for r in rows:
            same = r["kv_cache_dtype"] == kv_dtype and r["kernel_source"] == kernel
            if same and r["num_heads"] == 4 * r["num_key_value_heads"]:
                lat[(r["num_key_value_heads"], r["batch_size"], r["step"] + 1)].append(r["latency"])
        if not lat:
            continue

        def gbps(kv: int, b: int, ctx: int, lat=lat, kv_dtype=kv_dtype, name=name) -> float | None:
            if (kv, b, ctx) not in lat:
                return None
            nbytes = b * ctx * kv * HEAD_DIM * 2 * KV_BYTES[kv_dtype]
            achieved = nbytes / (min(lat[(kv, b, ctx)]) * 1e-3) / 1e9
            if achieved > peak_gbps:
                counts.bump(f"decode_attention.{name} capped at rated bandwidth")
                achieved = peak_gbps
            return _sig(achieved)

        grid = []
        for kv in KV_HEADS:
            plane = []
            for b in BATCH:
                line, filled = _fill([gbps(kv, b, c) for c in CONTEXT])
                counts.bump(f"decode_attention.{name} cells filled from the nearest context", filled)
                plane.append(line)
            grid.append(plane)
        out[name] = {"kv_heads": KV_HEADS, "batch": BATCH, "context": CONTEXT, "gbps": grid}
    return out, kernel


def prefill_table(path: Path, counts: Counts) -> tuple[dict, str]:
    rows = [
        r
        for r in _read(path)
        if r.get("window_size", 0) == 0
        and r["head_dim"] == HEAD_DIM
        and r["batch_size"] == 1
        and r["kv_cache_dtype"] == "bfloat16"
    ]
    kernel = _main_kernel(rows, "attn_dtype", "bfloat16")
    lat: dict[tuple[int, int], list[float]] = defaultdict(list)
    for r in rows:
        if r["kernel_source"] == kernel and (r["num_heads"], r["num_key_value_heads"]) in Q_HEADS:
            lat[(r["num_heads"], r["isl"])].append(r["latency"])

    def tflops(h: int, isl: int) -> float | None:
        if (h, isl) not in lat:
            return None
        return _sig(2 * h * HEAD_DIM * isl * isl / (min(lat[(h, isl)]) * 1e-3) / 1e12)

    grid = []
    for h, _ in Q_HEADS:
        line, filled = _fill([tflops(h, s) for s in ISL])
        counts.bump("prefill_attention cells filled from the nearest length", filled)
        grid.append(line)
    return {"heads": [h for h, _ in Q_HEADS], "isl": ISL, "tflops": grid}, kernel


def derive(root: Path, system: str) -> dict:
    spec = yaml.safe_load((root / "systems" / f"{system}.yaml").read_text())["gpu"]
    data = root / "systems" / "data" / system
    gemm_dir = _newest(data / "gemm" / FRAMEWORK)
    attn_dir = _newest(data / "attention" / FRAMEWORK)
    peak_gbps, counts = spec["mem_bw"] / 1e9, Counts()
    gemm, gemm_kernels = gemm_tables(gemm_dir / "gemm_perf.parquet", peak_gbps, counts)
    decode, decode_kernel = decode_tables(attn_dir / "generation_attention_perf.parquet", peak_gbps, counts)
    prefill, prefill_kernel = prefill_table(attn_dir / "context_attention_perf.parquet", counts)
    device = _read(gemm_dir / "gemm_perf.parquet")[0]["device"]
    files = [
        f"aiconfigurator_core/systems/{system}.yaml",
        *(
            str(p.relative_to(root.parent))
            for p in (
                gemm_dir / "gemm_perf.parquet",
                attn_dir / "generation_attention_perf.parquet",
                attn_dir / "context_attention_perf.parquet",
            )
        ),
    ]
    fp8 = spec.get("fp8_tc_flops")
    return {
        "system": system,
        "device": device,
        "source": {
            "package": PACKAGE,
            "version": VERSION,
            "license": LICENSE,
            "files": files,
            "kernels": {
                **{f"gemm.{k}": v for k, v in gemm_kernels.items()},
                "decode_attention": decode_kernel,
                "prefill_attention": prefill_kernel,
            },
            "derived_by": "scripts/derive_kernel_tables.py",
            "corrections": {k: v for k, v in sorted(counts.items()) if v},
            "basis": "measured",
        },
        # the peaks the table's GPU is rated at (the wheel's systems/<system>.yaml: datasheet values);
        # a profile of another GPU scales the table by the ratio of its own peaks to these
        "peaks": {
            "bf16_dense_tflops": spec["bfloat16_tc_flops"] / 1e12,
            "fp8_dense_tflops": fp8 / 1e12 if fp8 else None,
            "hbm_gbps": spec["mem_bw"] / 1e9,
        },
        "gemm": gemm,
        "decode_attention": decode,
        "prefill_attention": prefill,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not (Path(argv[0]) / "systems" / "data").is_dir():
        print("usage: derive_kernel_tables.py <unzipped wheel>/aiconfigurator_core (see the docstring)")
        return 2
    root = Path(argv[0])
    OUT.mkdir(parents=True, exist_ok=True)
    for system in SYSTEMS:
        table = derive(root, system)
        path = OUT / f"{system}.json"
        path.write_text(json.dumps(table, separators=(",", ":")) + "\n")
        print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size // 1024} KB, {table['device']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
