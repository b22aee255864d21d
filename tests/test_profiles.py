"""Bundled hardware profiles: complete, sourced, and consistent with the reference tables."""

from __future__ import annotations

import csv
import re

import pytest
import yaml

from tpplan import io
from tpplan.specs import Sourced

# profile → the gpus.csv row its GPU numbers come from
GPU_ROWS = {
    "dgx-a100-80g": "A100 SXM4 80GB",
    "dgx-h100": "H100 SXM5 80GB",
    "hgx-h200": "H200 SXM 141GB",
    "hgx-b200": "B200 (HGX/DGX B200)",
    "gb200-nvl72": "GB200 (per B200 GPU in GB200 NVL72)",
    "l40s-8x-pcie": "L40S",
    "a10g-4x-pcie": "A10G (AWS g5)",
    "a100-pcie-8x-nvlink-pairs": "A100 PCIe 80GB",
}


def _sourced(obj, path=""):
    """Every Sourced value in a record, with its dotted path."""
    if isinstance(obj, Sourced):
        yield path, obj
    elif hasattr(type(obj), "model_fields"):
        for name in type(obj).model_fields:
            yield from _sourced(getattr(obj, name), f"{path}.{name}".lstrip("."))


@pytest.fixture(scope="module")
def profiles():
    return {p.name: p for _, p in io.bundled_profiles()}


def test_file_names_match_profile_names():
    for path, prof in io.bundled_profiles():
        assert path.stem == prof.name


def test_every_number_has_a_source(profiles):
    for prof in profiles.values():
        numbers = list(_sourced(prof))
        assert len(numbers) >= 5, prof.name
        for path, q in numbers:
            assert len(q.source) > 10, (prof.name, path)
            if q.basis == "assumed":
                # an assumption must say so in words, not just in the basis field
                assert any(w in q.source.lower() for w in ("assum", "not ", "no ", "unverified")), (
                    prof.name,
                    path,
                )


def test_topology_facts(profiles):
    assert profiles["dgx-h100"].domain_size == 8 and profiles["dgx-h100"].inter_node.kind == "ib-ndr"
    assert profiles["dgx-a100-80g"].inter_node.kind == "ib-hdr"
    assert profiles["gb200-nvl72"].domain_size == 72 and profiles["gb200-nvl72"].total_gpus == 72
    assert profiles["a100-pcie-8x-nvlink-pairs"].domain_size == 2
    assert profiles["l40s-8x-pcie"].nvlink is None and profiles["a10g-4x-pcie"].total_gpus == 4
    assert profiles["cpu-local"].backend == "gloo"
    assert not profiles["dgx-a100-80g"].gpu.supports_fp8 and profiles["dgx-h100"].gpu.supports_fp8


def test_gpu_numbers_match_reference_table(profiles, reference):
    with open(reference / "gpus.csv") as f:
        rows = {r["gpu"]: r for r in csv.DictReader(f)}
    for name, row_name in GPU_ROWS.items():
        row, gpu = rows[row_name], profiles[name].gpu
        if row["bf16_dense_tflops"].replace(".", "").isdigit():
            assert gpu.bf16_dense_tflops.value == pytest.approx(float(row["bf16_dense_tflops"]), rel=0.01), (
                name
            )
        bw = row["mem_bw_gbs"].split("-")[0]
        assert gpu.hbm_gbps.value == pytest.approx(float(bw), rel=0.04), name


def test_prices_match_reference_table(profiles, reference):
    with open(reference / "prices.csv") as f:
        rows = list(csv.DictReader(f))
    # the price column, and later readings quoted in the notes ("2026-09-17 API read: $4.59 secure")
    prices = [float(r["usd_per_gpu_hour"]) for r in rows if r["usd_per_gpu_hour"].replace(".", "").isdigit()]
    prices += [float(x) for r in rows for x in re.findall(r"\$(\d+\.\d+)", r["notes"])]
    for prof in profiles.values():
        q = prof.price.usd_per_gpu_hour
        if q.basis != "assumed":
            assert any(q.value == pytest.approx(p) for p in prices), prof.name


def test_memory_is_what_nvml_reports_in_gib(profiles, repo):
    """memory_gib is the NVML total in GiB (MiB / 1024), not the marketing GB: an L40S sold as 48 GB
    reports 46068 MiB = 44.99 GiB. Checked against every captured nvidia-smi / NVML fixture."""
    checked = set()
    for path in sorted((repo / "tests" / "fixtures" / "topology").glob("*.yaml")):
        gpus = ((yaml.safe_load(path.read_text()) or {}).get("nvml") or {}).get("gpus") or []
        for g in gpus:
            if not g.get("memory_mib"):
                continue
            for name, p in profiles.items():
                if any(n in g["name"] for n in p.gpu.nvml_names):
                    assert p.gpu.memory_gib.value == pytest.approx(g["memory_mib"] / 1024, abs=0.01), (
                        name,
                        path,
                    )
                    checked.add(name)
    assert {"dgx-h100", "dgx-a100-80g", "l40s-8x-pcie", "a100-pcie-8x-nvlink-pairs"} <= checked
