"""Fit the bundled profiles' all-reduce numbers from tests/data/collectives/ (run through
scripts/derive_collective_tables.py --fit, which names the sources).

- Single node: one NCCL curve per rank count over NVLink (PCIe on L40S) for hgx-h200, hgx-b200,
  gb200-nvl72 and l40s-8x-pcie from the `fit` split of singlenode_allreduce.csv, written as the
  profile's `efficiency.allreduce` (dgx-h100 and dgx-a100-80g keep scripts/fit_defaults.py's fits).
  Profiles without a table (a10g, A100 PCIe) get curves from their published link rates x the
  nccl-tests ratios of params.prior_curve, labelled as such; cpu-local (gloo) gets them as assumed.
- Across nodes: Simple's pipeline fill, ring decay, the per-NIC bandwidth (one for 200 Gb/s-per-GPU
  A100 fabrics, one for NDR 400G) and the A100 RoCE fabric's latency scale fitted together (the NDR
  tables start at 8 MiB, so NDR keeps NCCL's own latencies) to the `fit` split of
  multinode_allreduce.csv, written as each profile's `inter_node.allreduce`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import yaml
from scipy.optimize import least_squares

from bench.collective_tables import multinode_errors
from tpplan import costmodel, io
from tpplan.costmodel.params import prior_curve
from tpplan.specs import AllReduceFit, Efficiency, HardwareProfile, NetworkAllReduce

REPO = Path(__file__).resolve().parent.parent
PROFILES = REPO / "hardware_profiles"
MARKER = "# ---- efficiency: all-reduce curves by scripts/derive_collective_tables.py --fit"
TABLES = "tests/data/collectives/singlenode_allreduce.csv"
FITTED = {"hgx-h200": "nvlink", "hgx-b200": "nvlink", "gb200-nvl72": "nvlink", "l40s-8x-pcie": "pcie"}
PUBLISHED = {
    "a10g-4x-pcie": {"pcie": (2, 4)},
    "a100-pcie-8x-nvlink-pairs": {"nvlink": (2,), "pcie": (2, 4, 8)},
}
ASSUMED = {"cpu-local": {"pcie": (2, 4, 8)}}
NDR_SOURCE = "gcp_a4_b200_2n + together_use3a_b200 (2, 8, 32 nodes)"


def fit_all(single_groups: Callable[[str, str], tuple[dict, str]]) -> None:
    for name, fabric in FITTED.items():
        fits = []
        for impl in ("backend", "custom"):
            groups, tables = single_groups(name, impl)
            if groups:  # custom: vLLM's own kernel, CUDA graphs (used inside an NVLink domain only)
                fits.append(
                    costmodel.fit_allreduce(
                        groups, fabric, implementation=impl, source=f"fitted to {TABLES} ({tables}, half)"
                    )
                )
        _write_efficiency(name, Efficiency(allreduce=tuple(fits)))
    for spec, basis in ((PUBLISHED, "published"), (ASSUMED, "assumed")):
        for name, fabrics in spec.items():
            _write_efficiency(
                name, Efficiency(allreduce=tuple(_spec_fit(name, f, r, basis) for f, r in fabrics.items()))
            )
    _fit_network()


def _spec_fit(name: str, fabric: str, ranks: tuple[int, ...], basis: str) -> AllReduceFit:
    profile = io.load_profile(name)
    curves = tuple(prior_curve(profile, fabric, ranks=n)[0] for n in ranks)
    why = prior_curve(profile, fabric, ranks=ranks[0])[1].removeprefix("prior: ")
    if basis == "published":
        source = f"published spec: {why}; no nccl-tests table for this GPU"
    else:
        source = (
            f"assumed: gloo ranks, no published collective numbers; NCCL's ratios on the assumed link ({why})"
        )
    return AllReduceFit(fabric=fabric, implementation="backend", curves=curves, source=source, basis=basis)


def _network(nic: float, scale: float, x, digits: int | None = None) -> NetworkAllReduce:
    """Candidate numbers (rounded only for writing: the fit's finite differences need them exact)."""
    r = (lambda v, d: round(v, d)) if digits is not None else (lambda v, d: float(v))
    return NetworkAllReduce(
        nic_busbw_gbps=r(nic, 2), latency_scale=r(scale, 3), fill_us=r(x[1], 1),
        ring_decay=r(x[2], 4), source="fit candidate", basis="fitted",
    )  # fmt: skip


def _with_net(name: str, net: NetworkAllReduce) -> HardwareProfile:
    profile = io.load_profile(name)
    assert profile.inter_node is not None
    return profile.model_copy(update={"inter_node": profile.inter_node.model_copy(update={"allreduce": net})})


def _fit_network() -> None:
    def residuals(x):
        profiles = {"dgx-a100-80g": _with_net("dgx-a100-80g", _network(x[3], x[0], x)),
                    "hgx-b200": _with_net("hgx-b200", _network(x[4], 1.0, x))}  # fmt: skip
        errs = multinode_errors("fit", profiles)
        return [math.log1p(e) for table in errs.values() for e in table]

    fit = least_squares(
        residuals, [1.3, 60.0, 0.03, 23.0, 45.0], bounds=([0.5, 0, 0, 5, 10], [4, 500, 0.3, 25, 50])
    )
    x = fit.x
    print(
        f"network fit: {len(fit.fun)} rows, rms log error {math.sqrt(sum(f * f for f in fit.fun) / len(fit.fun)):.3f}"
    )
    src = "tests/data/collectives/multinode_allreduce.csv"
    a100 = _network(x[3], x[0], x, 2).model_copy(
        update={"source": f"fitted to {src} oci_a100_2n (2x 8x A100, RoCE 2x100G per GPU)"}
    )
    ndr = _network(x[4], 1.0, x, 2).model_copy(
        update={
            "source": f"fitted to {src} {NDR_SOURCE} (B200, 8x 400G "
            "per node); latency scale 1: NCCL's constants (no small-message table on NDR to fit one)"
        }
    )
    derived = f"the NDR 400G fit of hgx-b200 ({NDR_SOURCE}); same ConnectX-7 NICs and NCCL"
    _write_network("dgx-a100-80g", a100)
    _write_network("hgx-b200", ndr)
    for name in ("dgx-h100", "hgx-h200"):
        _write_network(name, ndr.model_copy(update={"source": derived, "basis": "derived"}))
    xdr = ndr.nic_busbw_gbps * 100 / 50  # the same share of an XDR 800G port
    _write_network("gb200-nvl72", ndr.model_copy(update={
        "nic_busbw_gbps": round(xdr, 2), "basis": "derived",
        "source": f"the NDR fit's share of the link ({ndr.nic_busbw_gbps:g}/50) x XDR 100 GB/s; {derived}"}))  # fmt: skip
    _write_network("cpu-local", NetworkAllReduce(
        nic_busbw_gbps=1.0, basis="assumed",
        source="assumed: gloo over loopback, NCCL's structure and constants stand in (calibrate from a sweep)"))  # fmt: skip


def _flow(record) -> str:
    body = yaml.safe_dump(
        record.model_dump(mode="json"), default_flow_style=True, width=10_000, sort_keys=False
    )
    return body.strip()


def _write_network(name: str, net: NetworkAllReduce) -> None:
    path = PROFILES / f"{name}.yaml"
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("inter_node:"))
    end = start + 1
    while end < len(lines) and lines[end].startswith("  "):
        end += 1
    block = [line for line in lines[start:end] if not line.startswith("  allreduce:")]
    lines[start:end] = [*block, f"  allreduce: {_flow(net)}"]
    path.write_text("\n".join(lines) + "\n")
    io.load_profile(str(path))  # still a valid profile
    print(
        f"{name}: inter_node.allreduce nic {net.nic_busbw_gbps} GB/s, latency x{net.latency_scale} ({net.basis})"
    )


def _write_efficiency(name: str, eff: Efficiency) -> None:
    path = PROFILES / f"{name}.yaml"
    text = path.read_text()
    text = text.split(MARKER)[0].rstrip("\n") + "\n"
    if re.search(r"^efficiency:", text, re.M):
        raise SystemExit(f"{path}: has an efficiency section not written by this script; not touching it")
    body = yaml.safe_dump(
        {"efficiency": eff.model_dump(mode="json", exclude_defaults=True)}, sort_keys=False, width=120
    )
    path.write_text(f"{text}{MARKER}; re-run it to reproduce (the tool never reads tests/).\n{body}")
    io.load_profile(str(path))
    print(
        f"{name}: efficiency.allreduce {[(a.fabric, [c.ranks for c in a.curves], a.basis) for a in eff.allreduce]}"
    )
