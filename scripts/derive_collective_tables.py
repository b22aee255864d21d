"""Derive the all-reduce tables in tests/data/collectives/ and fit the profiles' all-reduce numbers.

    .venv/bin/python scripts/derive_collective_tables.py --wheel aiconfigurator_core-0.12.0-*.whl
    .venv/bin/python scripts/derive_collective_tables.py --fit          # rewrite the profiles' sections

Sources (each table keeps its id in the CSVs; tests/data/collectives/sources.csv has the details):
- single node, NCCL: the nccl-tests all_reduce tables (half precision) of the `aiconfigurator-core`
  0.12.0 wheel (Apache-2.0; PyPI), systems/data/<system>/comm/nccl/<version>/nccl_perf.parquet, for
  H200, B200, GB200 and L40S (A100/H100 are fitted by scripts/fit_defaults.py from the same wheel's
  tables as copied into ../shared/reference). Per system the oldest NCCL version is held apart.
  The wheel's end-to-end serving samples (silicon_sample.csv) are never read.
- single node, held apart: togethercomputer/together-nccl-tests benchmarks/H100/results/
  20260305_220043/all_reduce_nvls.out (8x H100, NCCL 2.26.2).
- across nodes (transcribed below, out-of-place times):
  oci_a100_2n   github:oracle-quickstart/oci-hpc-oke README.md, 2x BM.GPU.B4.8 (8x A100-SXM4-40GB, RoCE
                2x100G per GPU), all_reduce_perf 8 B-8 GiB, NCCL's own choice                       [fit]
  gcp_a4_b200_2n github:dstackai/dstack docs/examples/clusters/gcp (A4: 2x 8x B200, 8x 400G RoCE),
                8 MiB-8 GiB, NCCL's own choice                                                       [fit]
  together_use3a_b200_<k>n  github:togethercomputer/together-nccl-tests baselines/use3a-ss/
                2026-05-02_nccl_collective_scaling_report.md: DGX B200, 8x NDR per node, NCCL 2.29.7,
                busbw at 16 GiB per forced algorithm (ring, tree, nvls_tree, collnet=SHARP), 2-46 nodes;
                2, 8 and 32 nodes fitted, 4, 16 and 46 held apart
  nccl1244_h20_2n  NVIDIA/nccl#1244: 2x 8x H20 (NVLink4), 16 NDR NICs, NCCL 2.21.5, NVLSTree, 4-512 B [held]
  nccl812_dgx_a100_2n  NVIDIA/nccl#812 (NVIDIA): 2x DGX-A100, 8x HDR each: 192 GB/s busbw        [held]
"""

from __future__ import annotations

import argparse
import csv
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data" / "collectives"
sys.path.insert(0, str(REPO))

WHEEL_SYSTEMS = {
    "h200_sxm": "hgx-h200",
    "b200_sxm": "hgx-b200",
    "gb200": "gb200-nvl72",
    "l40s": "l40s-8x-pcie",
}
GIB16 = 16 * 2**30

OCI_A100 = [(8, 36.47), (16, 38.86), (32, 38.53), (64, 39.25), (128, 38.85), (256, 40.68), (512, 39.27),
            (1024, 41.97), (2048, 43.36), (4096, 44.54), (8192, 48.16), (16384, 49.40), (32768, 49.66),
            (65536, 51.69), (131072, 54.86), (262144, 67.95), (524288, 73.94), (1048576, 85.58),
            (2097152, 99.19), (4194304, 127.0), (8388608, 174.3), (16777216, 282.7), (33554432, 452.3),
            (67108864, 821.7), (134217728, 1542.0), (268435456, 3042.7), (536870912, 6436.0),
            (1073741824, 9187.8), (2147483648, 18289), (4294967296, 34176), (8589934592, 67689)]  # fmt: skip
GCP_A4 = [(8388608, 156.9), (16777216, 196.3), (33554432, 258.5), (67108864, 369.4), (134217728, 638.5),
          (268435456, 940.3), (536870912, 1695.2), (1073741824, 3229.9), (2147483648, 6107.7),
          (4294967296, 11952), (8589934592, 23563)]  # fmt: skip
USE3A_BUSBW = {  # nodes -> busbw GB/s at 16 GiB
    "ring": {2: 344.7, 4: 334.8, 8: 322.6, 16: 306.3, 32: 304.4, 46: 291.4},
    "nvls_tree": {2: 717.2, 4: 288.9, 8: 274.3, 16: 290.7, 32: 280.7, 46: 274.9},
    "tree": {2: 335.2, 4: 190.7, 8: 192.6, 16: 193.4, 32: 193.5, 46: 193.2},
    "collnet": {2: 533.0, 4: 543.8, 8: 547.9, 16: 546.7, 32: 544.3, 46: 544.8},
}
USE3A_FIT_NODES = {2, 8, 32}
H20_NVLSTREE = [(4, 47.54), (8, 47.60), (16, 46.25), (32, 46.35), (64, 46.30), (128, 47.76), (256, 46.65),
                (512, 46.58)]  # fmt: skip
TOGETHER_H100 = [(8, 35.58), (16, 35.31), (32, 34.63), (64, 34.90), (128, 35.91), (256, 35.50), (512, 36.00),
                 (1024, 35.17), (2048, 35.91), (4096, 35.34), (8192, 35.29), (16384, 35.81), (32768, 35.41),
                 (65536, 36.24), (131072, 37.03), (262144, 38.71), (524288, 40.67), (1048576, 42.19),
                 (2097152, 42.00), (4194304, 53.78), (8388608, 79.89), (16777216, 121.05), (33554432, 212.92),
                 (67108864, 363.33), (134217728, 702.12), (268435456, 1354.71), (536870912, 2638.60),
                 (1073741824, 5212.28), (2147483648, 10330.6), (4294967296, 20463.0),
                 (8589934592, 40772.4)]  # fmt: skip

MULTI_FIELDS = [
    "table",
    "split",
    "profile",
    "nodes",
    "gpus_per_node",
    "nccl",
    "algorithm",
    "bytes",
    "time_us",
]
SINGLE_FIELDS = ["table", "split", "profile", "fabric", "implementation", "ranks", "nccl", "bytes", "time_us"]


def multinode_rows() -> list[dict]:
    rows = []

    def add(table, split, profile, nodes, nccl, algorithm, points):
        for nbytes, t in points:
            rows.append(
                dict(
                    zip(
                        MULTI_FIELDS,
                        (table, split, profile, nodes, 8, nccl, algorithm, nbytes, t),
                        strict=True,
                    )
                )
            )

    add("oci_a100_2n", "fit", "dgx-a100-80g", 2, "unknown", "auto", OCI_A100)
    add("gcp_a4_b200_2n", "fit", "hgx-b200", 2, "unknown", "auto", GCP_A4)
    for algorithm, by_nodes in USE3A_BUSBW.items():
        for k, busbw in by_nodes.items():
            n = 8 * k
            t = round(GIB16 * 2 * (n - 1) / n / (busbw * 1e3), 1)  # busbw = S/t * 2(n-1)/n
            split = "fit" if k in USE3A_FIT_NODES else "heldout"
            add(f"together_use3a_b200_{k}n", split, "hgx-b200", k, "2.29.7", algorithm, [(GIB16, t)])
    add("nccl1244_h20_2n", "heldout", "dgx-h100", 2, "2.21.5", "nvls_tree", H20_NVLSTREE)
    s = 8 * 2**30
    add(
        "nccl812_dgx_a100_2n", "heldout", "dgx-a100-80g", 2, "unknown", "auto", [(s, s * 2 * 15 / 16 / 192e3)]
    )
    return rows


def wheel_rows(wheel: Path) -> list[dict]:
    """Median out-of-place latency per (system, NCCL version, ranks, size) of the wheel's all_reduce."""
    import io

    import pandas as pd

    rows = []
    with zipfile.ZipFile(wheel) as z:
        for system, profile in WHEEL_SYSTEMS.items():
            prefix = f"aiconfigurator_core/systems/data/{system}/comm/nccl/"
            paths = sorted(
                p for p in z.namelist() if p.startswith(prefix) and p.endswith("nccl_perf.parquet")
            )
            fabric = "pcie" if system == "l40s" else "nvlink"
            tables = {}
            for path in paths:
                d = pd.read_parquet(io.BytesIO(z.read(path)))
                d = d[(d.op_name == "all_reduce") & (d.nccl_dtype == "half")]
                if len(d):
                    tables[path[len(prefix) :].split("/")[0]] = d.groupby(
                        ["num_gpus", "message_size"]
                    ).latency
            oldest = min(tables, key=lambda v: tuple(int(x) for x in v.split(".")))
            for version, latency in tables.items():
                split = "heldout" if version == oldest and len(tables) > 1 else "fit"
                for (n, elems), ms in latency.median().items():
                    row = (
                        f"aic_{system}_{version}",
                        split,
                        profile,
                        fabric,
                        "backend",
                        n,
                        version,
                        elems * 2,
                        ms * 1e3,
                    )
                    rows.append(dict(zip(SINGLE_FIELDS, row, strict=True)))
            if fabric == "nvlink":
                rows += _custom_rows(z, system, profile)
    for nbytes, t in TOGETHER_H100:
        row = ("together_h100_1n", "heldout", "dgx-h100", "nvlink", "backend", 8, "2.26.2", nbytes, t)
        rows.append(dict(zip(SINGLE_FIELDS, row, strict=True)))
    return rows


def _custom_rows(z: zipfile.ZipFile, system: str, profile: str) -> list[dict]:
    """vLLM's custom all-reduce under CUDA graphs, newest vLLM version (as fit_defaults.py uses it)."""
    import io

    import pandas as pd

    prefix = f"aiconfigurator_core/systems/data/{system}/comm/vllm/"
    paths = [p for p in z.namelist() if p.startswith(prefix) and p.endswith("custom_allreduce_perf.parquet")]
    path = max(paths, key=lambda p: tuple(int(x) for x in p[len(prefix) :].split("/")[0].split(".")))
    version = path[len(prefix) :].split("/")[0]
    d = pd.read_parquet(io.BytesIO(z.read(path)))
    d = d[(d.op_name == "all_reduce") & (d.kernel_source == "vLLM_custom_graph")]
    rows = []
    for (n, elems), ms in d.groupby(["num_gpus", "message_size"]).latency.median().items():
        row = (
            f"aic_{system}_vllm{version}",
            "fit",
            profile,
            "nvlink",
            "custom",
            n,
            version,
            elems * 2,
            ms * 1e3,
        )
        rows.append(dict(zip(SINGLE_FIELDS, row, strict=True)))
    return rows


def write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {path.relative_to(REPO)} ({len(rows)} rows)")


def single_groups(profile: str, implementation: str) -> tuple[dict[int, list[tuple[float, float]]], str]:
    """(ranks -> [(bytes, us)], source) of the fit split of `profile`'s single-node rows."""
    groups: dict[int, list[tuple[float, float]]] = defaultdict(list)
    tables = set()
    with open(DATA / "singlenode_allreduce.csv", newline="") as f:
        for r in csv.DictReader(f):
            if (r["profile"], r["split"], r["implementation"]) == (profile, "fit", implementation):
                groups[int(r["ranks"])].append((float(r["bytes"]), float(r["time_us"])))
                tables.add(r["table"])
    return dict(groups), ", ".join(sorted(tables))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", type=Path, help="aiconfigurator_core-0.12.0 wheel (pip download --no-deps)")
    ap.add_argument("--fit", action="store_true", help="fit and rewrite the profiles' all-reduce numbers")
    args = ap.parse_args(argv)
    DATA.mkdir(parents=True, exist_ok=True)
    write_csv(DATA / "multinode_allreduce.csv", MULTI_FIELDS, multinode_rows())
    if args.wheel:
        write_csv(DATA / "singlenode_allreduce.csv", SINGLE_FIELDS, wheel_rows(args.wheel))
    if args.fit:
        from scripts.fit_collectives import fit_all

        fit_all(single_groups)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
