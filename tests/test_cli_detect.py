"""`tpplan detect` end to end: on this machine (no GPU: CPU profile), and on fixtures through
the test-only TPPLAN_FAKE_NVML / TPPLAN_SYSFS_ROOT hooks, feeding `tpplan candidates`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner
from fakes import FIXTURES, MACHINES, load_fixture, sysfs

from tpplan import io
from tpplan.cli import cli

LAUNCHER_ENV = ("SLURM_NNODES", "SLURM_JOB_NUM_NODES", "GROUP_WORLD_SIZE", "WORLD_SIZE", "LOCAL_WORLD_SIZE")
HOOKS = ("TPPLAN_FAKE_NVML", "TPPLAN_SYSFS_ROOT")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in (*LAUNCHER_ENV, *HOOKS):
        monkeypatch.delenv(var, raising=False)


def fake_env(name: str, tmp_path) -> dict[str, str]:
    root = sysfs.build(load_fixture(FIXTURES / f"{name}.yaml"), tmp_path / "root")
    return {"TPPLAN_FAKE_NVML": str(FIXTURES / f"{name}.yaml"), "TPPLAN_SYSFS_ROOT": str(root)}


def run(args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, args, env=env or {}, catch_exceptions=False)


def nvml_works() -> bool:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def test_help_has_examples_and_the_test_hooks():
    out = run(["detect", "--help"]).output
    assert "Examples:" in out and "tpplan detect --nodes 2 --out dgx.yaml" in out
    assert "TPPLAN_FAKE_NVML" in out and "TPPLAN_SYSFS_ROOT" in out
    assert "tpplan detect" in run(["--help"]).output


@pytest.mark.skipif(nvml_works(), reason="this machine has a working NVIDIA driver")
def test_this_machine_without_gpu_writes_a_cpu_profile_candidates_accepts(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in (*LAUNCHER_ENV, *HOOKS)}
    out = tmp_path / "cpu.yaml"
    cmd = [sys.executable, "-m", "tpplan"]
    done = subprocess.run(
        [*cmd, "detect", "--out", str(out)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("no NVIDIA GPU found: nvmlInit failed with NVML_ERROR_")
    assert "gloo ranks" in lines[0] and "usable CPU core" in lines[0] and "GiB RAM" in lines[0]
    profile = io.load_profile(out)
    assert profile.backend == "gloo" and profile.gpus_per_node >= 2 and profile.nvlink is None
    assert profile.gpu.memory_gib.basis == "derived" and "/proc/meminfo" in profile.gpu.memory_gib.source
    cand = subprocess.run(
        [*cmd, "candidates", "tiny", "--profile", str(out), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cand.returncode == 0, cand.stderr
    assert any(c["valid"] and c["tp"] == 2 for c in json.loads(cand.stdout))


def test_fake_machine_through_the_real_entry_point(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}, **fake_env("dgx-h100", tmp_path)}
    out = tmp_path / "h100.yaml"
    cmd = [sys.executable, "-m", "tpplan"]
    done = subprocess.run(
        [*cmd, "detect", "--out", str(out), "--nodes", "2", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    report = json.loads(done.stdout)
    assert report["gpu_found"] and report["out"] == str(out)
    assert report["profile"]["topology"]["domains"] == [list(range(8))]
    env.pop("TPPLAN_FAKE_NVML")
    cand = subprocess.run(
        [*cmd, "candidates", "llama-3.1-70b", "--profile", str(out), "--tp", "16", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cand.returncode == 0, cand.stderr
    assert {(c["tp"], c["crosses_nvlink_domain"], c["tp_fabric"]) for c in json.loads(cand.stdout)} == {
        (16, True, "network")
    }


@pytest.mark.parametrize("name", [m for m in MACHINES if m != "nvml-init-fails"])
def test_json_reports_domains_matrix_and_hcas_of_each_fixture(name, tmp_path):
    out = tmp_path / "p.yaml"
    result = run(["detect", "--json", "--out", str(out)], fake_env(name, tmp_path))
    assert result.exit_code == 0, result.output
    topo = json.loads(result.stdout)["profile"]["topology"]
    expect = load_fixture(FIXTURES / f"{name}.yaml")["expect"]
    assert topo["domains"] == expect["domains"]
    assert topo["matrix"] == [row.split() for row in expect["matrix"]]
    assert {h["device"]: h["gpu_levels"] for h in topo["hcas"]} == {
        k: v.split() for k, v in expect["hcas"].items()
    }
    assert io.load_profile(out).topology.domains == expect["domains"]


@pytest.mark.parametrize(
    ("name", "flags", "tp", "crosses"),
    [
        ("dgx-a100", ["--gpus", "16"], 16, True),
        ("dgx-a100", ["--gpus", "16"], 8, False),
        ("dgx-h100", ["--gpus", "16"], 16, True),
        ("a100-pcie-nvlink-pairs", [], 4, True),
        ("a100-pcie-nvlink-pairs", [], 2, False),
    ],
)
def test_detected_profile_feeds_candidates(name, flags, tp, crosses, tmp_path):
    out = tmp_path / "p.yaml"
    assert run(["detect", "--out", str(out)], fake_env(name, tmp_path)).exit_code == 0
    result = run(["candidates", "llama-3.1-70b", "--profile", str(out), "--tp", str(tp), "--json", *flags])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found and {c["crosses_nvlink_domain"] for c in found} == {crosses}


def test_two_nodes_from_slurm_make_tp16_cross(tmp_path):
    out = tmp_path / "p.yaml"
    assert (
        run(["detect", "--out", str(out)], {**fake_env("dgx-a100", tmp_path), "SLURM_NNODES": "2"}).exit_code
        == 0
    )
    result = run(["candidates", "llama-3.1-70b", "--profile", str(out), "--tp", "16", "--json"])
    assert [c["crosses_nvlink_domain"] for c in json.loads(result.stdout)] == [True]


def test_two_nodes_without_an_hca_warn_that_cross_node_layouts_will_be_invalid(tmp_path):
    out = tmp_path / "p.yaml"
    env = fake_env("a100-pcie-nvlink-pairs", tmp_path)  # no HCA on this box
    result = run(["detect", "--nodes", "2", "--out", str(out)], env)
    assert result.exit_code == 0, result.output
    assert "2 nodes, but no InfiniBand/RoCE port was found" in result.stderr
    assert io.load_profile(out).inter_node is None
    one = run(["detect", "--out", str(tmp_path / "one.yaml")], env)  # one node: nothing to warn about
    assert "InfiniBand/RoCE port was found" not in one.stderr


def test_table_output_reads_like_nvidia_smi(tmp_path):
    result = run(["detect", "--out", str(tmp_path / "p.yaml")], fake_env("dgx-a100-link-down", tmp_path))
    assert result.exit_code == 0
    out = result.stdout
    assert "Connection matrix (compare with `nvidia-smi topo -m`)" in out
    gpu0 = next(line for line in out.splitlines() if line.startswith("GPU0 "))
    assert gpu0.split()[:10] == ["GPU0", "X", "NV12", "NV12", "NV11", "NV12", "NV12", "NV12", "NV12", "PXB"]
    assert gpu0.split()[-2:] == ["48-63,176-191", "3"]
    assert "NVLink domains (1, sizes [8]): 0-7" in out and "mlx5_4" in out
    assert "GPU pairs: 21 x NV12 (300 GB/s per direction), 7 x NV11 (275 GB/s per direction)" in out
    assert "warning: GPU 3: NVLink 7 down" in result.stderr


def test_init_failure_via_cli_is_one_line_and_exit_0(tmp_path):
    result = run(["detect", "--out", str(tmp_path / "p.yaml")], fake_env("nvml-init-fails", tmp_path))
    assert result.exit_code == 0
    assert result.stderr.count("\n") == 1 and "NVML_ERROR_LIB_RM_VERSION_MISMATCH" in result.stderr
    assert "InfiniBand / RoCE ports:" in result.stdout  # sysfs still read
    assert io.load_profile(tmp_path / "p.yaml").backend == "gloo"


def test_out_dash_prints_the_profile_yaml(tmp_path):
    result = run(
        ["detect", "--out", "-", "--price-usd-per-gpu-hour", "1.8"], fake_env("l40s-8x-pcie", tmp_path)
    )
    assert result.exit_code == 0
    data = yaml.safe_load(result.stdout)
    assert data["price"]["usd_per_gpu_hour"]["value"] == 1.8 and data["topology"]["hcas"][0]["kind"] == "roce"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--nodes", "0"], {}, "--nodes: 0 is not allowed; expected an integer >= 1"),
        (["--price-usd-per-gpu-hour", "-2"], {}, "--price-usd-per-gpu-hour: -2.0 is not a price"),
        ([], {"SLURM_NNODES": "many"}, "environment variable SLURM_NNODES: 'many' is not a node count"),
        ([], {"TPPLAN_FAKE_NVML": "/nonexistent.yaml"}, "no such fixture file"),
        (["--out", "."], {}, ".: --out: is a directory; expected a file path"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, env, message, tmp_path):
    result = run(["detect", "--out", str(tmp_path / "p.yaml"), *args], env)
    assert result.exit_code == 2 and message in result.stderr and result.stderr.count("\n") == 1
