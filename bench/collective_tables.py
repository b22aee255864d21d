"""All-reduce error against the published nccl-tests tables in tests/data/collectives/.

Shared by `make bench` (bench_collectives.py) and the tests. Each table row names the bundled
profile it is priced on, the node count and, where the source forced one (NCCL_ALGO), the
algorithm; `split` says whether scripts/derive_collective_tables.py fitted on it ("fit") or it is
held apart for evaluation ("heldout"). The tables and their sources: tests/data/collectives/sources.csv.
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from pathlib import Path

from tpplan import io
from tpplan.costmodel import Params
from tpplan.costmodel.collectives import allreduce_time, curve_time_us, network_choices, network_params
from tpplan.specs import HardwareProfile

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "collectives"


def _rows(name: str) -> list[dict[str, str]]:
    with open(DATA / name, newline="") as f:
        return list(csv.DictReader(f))


def multinode_errors(
    split: str | None = None, profiles: dict[str, HardwareProfile] | None = None
) -> dict[str, list[float]]:
    """table -> signed relative errors (predicted / measured - 1) of every row across nodes.
    `profiles`: stand-ins for bundled profiles by name (a fit tries its candidate numbers in them)."""
    out: dict[str, list[float]] = defaultdict(list)
    params: dict[str, Params] = {}
    profiles = profiles or {}
    for r in _rows("multinode_allreduce.csv"):
        if split and r["split"] != split:
            continue
        sharp = r["algorithm"] == "collnet"  # the source's switches reduce (SHARP active)
        key = r["profile"] + (" +sharp" if sharp else "")
        p = params.get(key) or params.setdefault(key, Params(_profile(r["profile"], sharp, profiles)))
        ranks, nbytes = int(r["nodes"]) * int(r["gpus_per_node"]), float(r["bytes"])
        if r["algorithm"] == "auto":
            t = allreduce_time(p, nbytes, ranks=ranks, fabric="network").latency_us
        else:  # the source forced NCCL_ALGO: NCCL still picks the protocol
            t = min(
                c.time_us for c in network_choices(p, nbytes, ranks=ranks) if c.algorithm == r["algorithm"]
            )
        out[r["table"]].append(t / float(r["time_us"]) - 1)
    return dict(out)


def _profile(name: str, sharp: bool, profiles: dict[str, HardwareProfile]) -> HardwareProfile:
    profile = profiles.get(name) or io.load_profile(name)
    if not sharp:
        return profile
    assert profile.inter_node is not None
    net = network_params(profile).model_copy(update={"in_network_reduction": True})
    fabric = profile.inter_node.model_copy(update={"allreduce": net})
    return profile.model_copy(update={"inter_node": fabric})


def singlenode_errors(split: str | None = None) -> dict[str, list[float]]:
    """table -> signed relative errors of the profile's fitted NVLink/PCIe NCCL curve."""
    out: dict[str, list[float]] = defaultdict(list)
    params: dict[str, Params] = {}
    for r in _rows("singlenode_allreduce.csv"):
        if split and r["split"] != split:
            continue
        p = params.setdefault(r["profile"], Params(io.load_profile(r["profile"])))
        found = p.allreduce_curve(r["fabric"], r["implementation"], ranks=int(r["ranks"]))
        assert found is not None
        out[r["table"]].append(curve_time_us(found[0], float(r["bytes"])) / float(r["time_us"]) - 1)
    return dict(out)


def median_abs_pct(errors: list[float]) -> float:
    return 100 * statistics.median(abs(e) for e in errors)
