"""Fit the `efficiency:` sections shipped in hardware_profiles/ from ../shared/reference.

    .venv/bin/python scripts/fit_defaults.py            # rewrite the sections
    .venv/bin/python scripts/fit_defaults.py --check    # exit 1 if re-fitting changes them

What is fitted, and from what (paths relative to ../shared):
- all-reduce curves (alpha, peak busbw, ramp) per rank count over NVLink, for NCCL ("backend") from
  reference/collectives/allreduce_<system>.csv (aiconfigurator-core 0.12.0's nccl-tests tables, half
  precision) plus the single-node 8-GPU nccl-tests tables in reference/published_results.csv; and for
  an engine's own kernel ("custom") from the vLLM custom all-reduce rows (CUDA graphs, newest version);
- dgx-h100 only: per-engine step costs from the 267 measured serving points of
  reference/serving/silicon_calibration.csv (tpplan calibrate's serving fit; the kernels' speed by shape
  comes from the measured kernel tables, not from this fit), also written as the engine priors of
  tpplan/data/engine_overheads.yaml (host-side costs: the prior for every other GPU).
The tool itself never reads ../shared; only this script and the tests do.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
from collections import defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
PROFILES = REPO / "hardware_profiles"
MARKER = "# ---- efficiency: fitted by scripts/fit_defaults.py"

# profile -> (collectives table, published nccl-tests tables of that system: (source prefix, hardware prefix))
SYSTEMS = {
    "dgx-a100-80g": (
        "allreduce_a100_sxm.csv",
        [
            ("github:stas00/ml-engineering network/README.md 'Real network", "8x A100 SXM"),
            ("github:Azure/AI-benchmarking-guide Azure_Results/ND_A100_v4", "Azure ND A100 v4"),
        ],
    ),
    "dgx-h100": (
        "allreduce_h100_sxm.csv",
        [
            ("github:Azure/AI-benchmarking-guide Azure Results/ND_H100_v5", "Azure ND H100 v5"),
        ],
    ),
}
SERVING_FIT = {"dgx-h100": "reference/serving/silicon_calibration.csv"}
CUSTOM_KERNEL = "vLLM_custom_graph"


def _size_bytes(text: str) -> float:
    """'size=32768B' | 'size=33M' (decimal, a power of two rounded) | 'payload=32KiB' -> bytes."""
    m = re.search(r"=\s*([\d.]+)\s*(B|KiB|MiB|GiB|K|M|G)?", text)
    if not m:
        raise ValueError(f"no size in {text!r}")
    value, unit = float(m.group(1)), m.group(2) or "B"
    if unit.endswith("iB"):
        return value * 1024 ** ("KMG".index(unit[0]) + 1)
    if unit == "B":
        return value
    decimal = value * 1000 ** ("KMG".index(unit) + 1)
    return 2.0 ** round(math.log2(decimal))  # nccl-tests steps sizes by powers of two


def published_points(shared: Path, wanted: list[tuple[str, str]]) -> list[tuple[float, float]]:
    """(bytes, latency_us) of 8-GPU single-node nccl-tests rows in published_results.csv."""
    points = []
    with open(shared / "reference" / "published_results.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["category"] != "collective" or not any(
                row["source"].startswith(s) and row["hardware"].startswith(h) for s, h in wanted
            ):
                continue
            size = _size_bytes(row["config"])
            metrics, values = row["metric"].split("|"), row["value"].split("|")
            got = dict(zip(metrics, map(float, values), strict=True))
            if "time_us" in got:
                t = got["time_us"]
            else:
                busbw = got.get("busbw_GBps", got.get("busbw"))
                t = size * 2 * 7 / 8 / (busbw * 1e3)
            points.append((size, t))
    return points


def collective_groups(shared: Path, table: str) -> tuple[dict, str, dict, str]:
    """NCCL and custom-kernel points by rank count, and how to describe each set."""
    nccl: dict[int, list] = defaultdict(list)
    custom_rows: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    versions = set()
    with open(shared / "reference" / "collectives" / table, newline="") as f:
        for row in csv.DictReader(f):
            n, point = int(row["num_gpus"]), (float(row["message_bytes"]), float(row["latency_us"]))
            if row["kernel_source"] == "NCCL" and row["dtype"] == "half":
                nccl[n].append(point)
                versions.add(row["source_version"])
            elif row["kernel_source"] == CUSTOM_KERNEL:
                custom_rows[row["source_version"]][n].append(point)
    newest = max(custom_rows, key=lambda v: tuple(int(x) for x in v.split(".")))
    nccl_src = f"reference/collectives/{table} (nccl-tests, NCCL {', '.join(sorted(versions))}, half)"
    custom_src = f"reference/collectives/{table} (vLLM {newest} custom all-reduce, CUDA graphs)"
    return nccl, nccl_src, custom_rows[newest], custom_src


# Where the serving fit starts for the engines it fits: fixed, so that a re-run reproduces the shipped
# numbers (starting from the shipped priors would let every re-run drift a little).
FIT_START = {"step_ms": 1.0, "per_seq_us": 30.0, "request_ms": 50.0, "cohort_fraction": 0.15}


def with_fit_start(profile):
    from tpplan import costmodel
    from tpplan.costmodel.profile_fit import with_overheads
    from tpplan.specs import EngineOverhead, Sourced

    params = costmodel.Params(profile)
    start = []
    for engine in ("trtllm", "vllm"):
        prior = params.overhead(engine)
        fields = {
            k: Sourced(value=v, source="fit start (scripts/fit_defaults.py)", basis="assumed")
            for k, v in FIT_START.items()
        }
        q = prior.per_layer_us
        fields["per_layer_us"] = Sourced(value=q.value, source=q.source, basis=q.basis)
        start.append(EngineOverhead(engine=engine, **fields))
    return profile.model_copy(update={"efficiency": with_overheads(profile.efficiency, start)})


def fit_profile(name: str, shared: Path = SHARED):
    """The bundled profile `name` with its efficiency section fitted from `shared`/reference."""
    from tpplan import api, costmodel

    profile = api.load_profile(name)
    profile = profile.model_copy(update={"efficiency": None})
    table, published = SYSTEMS[name]
    nccl, nccl_src, custom, custom_src = collective_groups(shared, table)
    extra = published_points(shared, published)
    nccl[8] = nccl[8] + extra
    nccl_src += f" + {len(extra)} single-node 8-GPU rows of reference/published_results.csv"
    eff = costmodel.with_allreduce(
        None,
        costmodel.fit_allreduce(nccl, "nvlink", implementation="backend", source="fitted to " + nccl_src),
    )
    eff = costmodel.with_allreduce(
        eff,
        costmodel.fit_allreduce(custom, "nvlink", implementation="custom", source="fitted to " + custom_src),
    )
    profile = profile.model_copy(update={"efficiency": eff})
    if name in SERVING_FIT:
        profile = with_fit_start(profile)
        here = Path.cwd()
        os.chdir(shared)  # so the fitted numbers cite reference/..., not this machine's absolute path
        try:
            _, profile = api.calibrate([SERVING_FIT[name]], profile)
        finally:
            os.chdir(here)
        # The held-apart spread calibrate keeps is shipped once, for every profile, in
        # tpplan/data/estimate_spread.yaml (scripts/derive_spread.py, the same split): not here too.
        eff = profile.efficiency.model_copy(update={"serving_spread": ()})
        profile = profile.model_copy(update={"efficiency": eff})
    return profile


def efficiency_block(profile) -> str:
    body = yaml.safe_dump(
        {"efficiency": profile.efficiency.model_dump(mode="json", exclude_none=True)},
        sort_keys=False,
        width=120,
    )
    return f"{MARKER}; re-run it to reproduce (the tool never reads ../shared).\n{body}"


def write(name: str, profile) -> bool:
    """Replace the profile file's efficiency block; True if the file changed."""
    path = PROFILES / f"{name}.yaml"
    text = path.read_text()
    head = text.split(MARKER)[0].rstrip("\n") + "\n"
    new = head + efficiency_block(profile)
    if new == text:
        return False
    path.write_text(new)
    return True


ENGINE_PRIORS = REPO / "tpplan" / "data" / "engine_overheads.yaml"


def engine_priors_text(profile) -> str:
    """tpplan/data/engine_overheads.yaml with its `basis: fitted` values replaced by this profile's fit
    (the fitted engine costs are host-side: the prior for every other GPU). Comments are kept."""
    fitted = {o.engine: o for o in profile.efficiency.overheads}
    out, engine = [], None
    for line in ENGINE_PRIORS.read_text().splitlines(keepends=True):
        head = re.match(r"^  ([\w-]+):\s*$", line)
        if head:
            engine = head.group(1)
        field = re.match(r"^(    (\w+): \{value: )([^,]+)(, basis: fitted,.*)$", line, re.S)
        if field and engine in fitted and getattr(fitted[engine], field.group(2)).basis == "fitted":
            value = getattr(fitted[engine], field.group(2)).value
            line = f"{field.group(1)}{value:g}{field.group(4)}"
        out.append(line)
    return "".join(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="only report whether the shipped sections are current"
    )
    args = parser.parse_args(argv)
    if not (SHARED / "reference").is_dir():
        print(f"{SHARED / 'reference'} not found: the fit needs the reference set beside the checkout")
        return 2
    stale = []
    for name in SYSTEMS:
        profile = fit_profile(name)
        if args.check:
            current = (PROFILES / f"{name}.yaml").read_text()
            if efficiency_block(profile) not in current:
                stale.append(name)
        elif write(name, profile):
            print(f"updated hardware_profiles/{name}.yaml")
        else:
            print(f"hardware_profiles/{name}.yaml already current")
        if name == "dgx-h100":
            text = engine_priors_text(profile)
            if args.check:
                if text != ENGINE_PRIORS.read_text():
                    stale.append("tpplan/data/engine_overheads.yaml")
            elif text != ENGINE_PRIORS.read_text():
                ENGINE_PRIORS.write_text(text)
                print("updated tpplan/data/engine_overheads.yaml")
    if stale:
        print("stale efficiency sections: " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main(sys.argv[1:]))
