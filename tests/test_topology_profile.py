"""Profile building: node counts, domain sizes, published numbers by NVML name, CPU fallback."""

from __future__ import annotations

import pytest
from fakes import machine

from tpplan import io, topology
from tpplan.cli.flags import flag_of
from tpplan.errors import ConfigError
from tpplan.specs import NvlinkLink
from tpplan.topology import cpu, graph
from tpplan.topology.profile import domain_size, match_bundled, node_count, user_price


@pytest.fixture(scope="module")
def bundled():
    return [p for _, p in io.bundled_profiles()]


@pytest.mark.parametrize(
    ("flag", "env", "nodes"),
    [
        (None, {}, 1),
        (3, {"SLURM_NNODES": "5"}, 3),
        (None, {"SLURM_NNODES": "5"}, 5),
        (None, {"SLURM_JOB_NUM_NODES": "4"}, 4),
        (None, {"GROUP_WORLD_SIZE": "2", "WORLD_SIZE": "64", "LOCAL_WORLD_SIZE": "8"}, 2),
        (None, {"WORLD_SIZE": "64", "LOCAL_WORLD_SIZE": "8"}, 8),
        (None, {"WORLD_SIZE": "8"}, 1),  # one torchrun node without LOCAL_WORLD_SIZE: nothing to divide
    ],
)
def test_node_count(flag, env, nodes):
    assert node_count(flag, env)[0] == nodes


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SLURM_NNODES": "two"}, "environment variable SLURM_NNODES: 'two' is not a node count"),
        ({"SLURM_NNODES": "0"}, "'0' is not a node count"),
        (
            {"WORLD_SIZE": "12", "LOCAL_WORLD_SIZE": "8"},
            "WORLD_SIZE 12 is not a multiple of LOCAL_WORLD_SIZE 8",
        ),
    ],
)
def test_bad_launcher_env_is_one_clear_error(env, message):
    with pytest.raises(ConfigError, match=message):
        node_count(None, env)


@pytest.mark.parametrize(
    ("domains", "unknown", "size"),
    [
        ([list(range(8))], set(), 8),
        ([[0, 1], [2, 3], [4, 5], [6, 7]], set(), 2),
        ([[0, 1, 2, 3], [4, 5, 6, 7]], set(), 4),
        ([[0, 2], [1, 3]], set(), 1),  # bridged across the index order: no aligned block is one domain
        ([[0, 1, 2], [3], [4, 5], [6, 7]], set(), 1),
        ([[0, 1, 2, 3, 4, 6, 7], [5]], {5}, 8),  # GPU 5 did not answer: unknown, not separate
        ([[0], [1], [2], [3]], set(), 1),
    ],
)
def test_domain_size_never_overstates(domains, unknown, size):
    n = sum(len(d) for d in domains)
    assert domain_size(n, domains, unknown=frozenset(unknown)) == size


def test_bundled_profiles_are_found_by_nvml_name(bundled):
    assert match_bundled("NVIDIA A100-SXM4-80GB", bundled).name == "dgx-a100-80g"
    assert match_bundled("A100-SXM4-80GB", bundled).name == "dgx-a100-80g"  # drivers before the NVIDIA prefix
    assert match_bundled("NVIDIA H100 80GB HBM3", bundled).name == "dgx-h100"
    assert match_bundled("NVIDIA  l40s", bundled).name == "l40s-8x-pcie"
    assert match_bundled("NVIDIA A100-SXM4-40GB", bundled) is None
    assert match_bundled("NVIDIA H100 PCIe", bundled) is None  # no family guessing


@pytest.mark.parametrize("value", [0, -1, 20_000, float("nan"), float("inf")])
def test_user_price_is_checked(value):
    with pytest.raises(ConfigError, match="price_usd_per_gpu_hour") as e:  # the CLI shows its flag
        user_price(value, "2026-01-01")
    assert e.value.renamed(flag_of).one_line().startswith("ConfigError: --price-usd-per-gpu-hour: ")


def test_user_price_overrides_the_bundled_one(tmp_path, bundled):
    fake, root, _ = machine("dgx-h100", tmp_path)
    found = topology.detect(
        bundled,
        None,
        price_usd_per_gpu_hour=2.5,
        nvml_module=fake,
        sysfs_root=root,
        env={},
        host="h",
        date="2026-05-01",
    )
    price = found.profile.price
    assert price.usd_per_gpu_hour.value == 2.5 and price.date == "2026-05-01"
    assert price.usd_per_gpu_hour.source.startswith(
        "given on the command line (--price-usd-per-gpu-hour 2.5)"
    )
    assert price.usd_per_gpu_hour.basis == "given"


def test_unknown_gpu_gets_marked_placeholders_and_warnings(tmp_path, bundled):
    fake, root, fixture = machine("l40s-8x-pcie", tmp_path)
    for gpu in fixture["nvml"]["gpus"]:
        gpu["name"] = "NVIDIA RTX 6000 Ada Generation"
    found = topology.detect(bundled, nvml_module=fake, sysfs_root=root, env={}, host="h", date="2026-01-01")
    gpu = found.profile.gpu
    assert gpu.name == "NVIDIA RTX 6000 Ada Generation" and gpu.memory_gib.basis == "measured"
    assert gpu.bf16_dense_tflops.basis == "assumed" and "placeholder" in gpu.bf16_dense_tflops.source
    assert found.profile.price.usd_per_gpu_hour.basis == "assumed"
    assert any("in no bundled profile" in w for w in found.warnings)
    assert any("--price-usd-per-gpu-hour" in w for w in found.warnings)


def test_nvl72_tray_takes_the_domain_from_the_bundled_rack(tmp_path, bundled):
    fake, root, fixture = machine("dgx-h100", tmp_path)
    m = fixture["nvml"]
    m["gpus"] = [dict(g, name="NVIDIA GB200") for g in m["gpus"][:4]]
    m["nvlink"]["links"] = m["nvlink"]["links"][:4]
    m["pcie"] = [" ".join(row.split()[:4]) for row in m["pcie"][:4]]
    found = topology.detect(
        bundled, nvml_module=fake, sysfs_root=root, env={}, host="tray", date="2026-01-01"
    )
    assert found.profile.topology.domains == [[0, 1, 2, 3]]
    assert found.profile.gpus_per_node == 4 and found.profile.domain_size == 72
    assert any("spans 72 GPUs across nodes" in w for w in found.warnings)


def test_half_a_dgx_in_a_container_keeps_its_own_domain(tmp_path, bundled):
    fake, root, fixture = machine("dgx-a100", tmp_path)
    m = fixture["nvml"]
    m["gpus"], m["nvlink"]["links"] = m["gpus"][:4], m["nvlink"]["links"][:4]
    m["pcie"] = [" ".join(row.split()[:4]) for row in m["pcie"][:4]]
    found = topology.detect(bundled, nvml_module=fake, sysfs_root=root, env={}, host="pod", date="2026-01-01")
    assert found.profile.gpus_per_node == 4 and found.profile.domain_size == 4


def test_domains_join_direct_links_and_switches():
    links = [
        NvlinkLink(gpu=0, link=0, active=True, remote_kind="gpu", remote_bus_id="b1", remote_gpu=1),
        NvlinkLink(gpu=1, link=0, active=True, remote_kind="gpu", remote_bus_id="b0", remote_gpu=0),
        NvlinkLink(gpu=2, link=0, active=True, remote_kind="nvswitch", remote_bus_id="SW"),
        NvlinkLink(gpu=3, link=0, active=True, remote_kind="nvswitch", remote_bus_id="sw"),
        NvlinkLink(gpu=4, link=0, active=False),
    ]
    assert graph.domains(5, links) == [[0, 1], [2, 3], [4]]
    counts = graph.nvlink_counts(5, links[:1] + links[2:])  # GPU 1 did not report its side
    assert counts[0][1] == counts[1][0] == 1 and counts[2][3] == 1 and counts[0][2] == 0


def write_proc(tmp_path, meminfo: str, model: str = "AMD EPYC 7742 64-Core Processor"):
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "meminfo").write_text(meminfo)
    (proc / "cpuinfo").write_text(f"processor\t: 0\nmodel name\t: {model}\n")
    return proc


def test_cpu_profile_from_proc(tmp_path, bundled):
    proc = write_proc(tmp_path, "MemTotal:       24683656 kB\nMemFree: 1 kB\nMemAvailable:   20971520 kB\n")
    machine_ = cpu.read_machine("box", proc)
    assert machine_.mem_available_kib == 20971520 and machine_.cpu_model == "AMD EPYC 7742 64-Core Processor"
    fake, root, _ = machine("nvml-init-fails", tmp_path / "sys")
    found = topology.detect(bundled, 2, nvml_module=fake, sysfs_root=root, env={}, host="box", proc=proc)
    p = found.profile
    ranks = machine_.ranks
    assert p.name == "detected-box-cpu" and p.backend == "gloo" and p.nodes == 2 and p.gpus_per_node == ranks
    assert (
        p.gpu.memory_gib.value == pytest.approx(20.0 / ranks, abs=0.01)
        and p.gpu.memory_gib.basis == "derived"
    )
    assert "MemAvailable 20.0 GiB" in p.gpu.memory_gib.source
    assert p.gpu.name == "CPU rank (gloo) on AMD EPYC 7742 64-Core Processor"
    assert p.gpu.bf16_dense_tflops.source.startswith("bundled profile cpu-local: ")


@pytest.mark.parametrize(("cores", "ranks"), [(1, 2), (2, 2), (6, 6), (128, 8)])
def test_cpu_ranks_one_per_core_within_bounds(cores, ranks):
    assert cpu.Machine("h", cores, "test", None, None, None).ranks == ranks
