"""tpplan.topology.detect on fixtures that reproduce real machines (fake NVML + fake /sys).

Each fixture carries what `nvidia-smi topo -m` shows for that machine (`expect`); the
detected domains, matrix and HCA rows must match it, and the written profile must be one
`tpplan candidates` accepts and that flags TP groups crossing the NVLink domain.
"""

from __future__ import annotations

import pytest
from fakes import MACHINES, machine

from tpplan import candidates, io, topology
from tpplan.records import Layout

GPU_MACHINES = [m for m in MACHINES if m != "nvml-init-fails"]


@pytest.fixture(scope="module")
def bundled():
    return [p for _, p in io.bundled_profiles()]


def detect(name, tmp_path, bundled, errors=None, nodes=None, env=None):
    fake, root, fixture = machine(name, tmp_path, errors)
    found = topology.detect(
        bundled, nodes, nvml_module=fake, sysfs_root=root, env=env or {}, host="fixture", date="2026-01-01"
    )
    return found, fixture["expect"], fake


@pytest.mark.parametrize("name", GPU_MACHINES)
def test_domains_matrix_and_hcas_match_nvidia_smi(name, tmp_path, bundled):
    found, expect, _ = detect(name, tmp_path, bundled)
    topo = found.profile.topology
    assert found.gpu_found and topo.errors == []
    assert topo.domains == expect["domains"]
    assert topo.matrix == [row.split() for row in expect["matrix"]]
    assert {h.label: h.gpu_levels for h in topo.hcas} == {k: v.split() for k, v in expect["hcas"].items()}
    assert [g.numa_node for g in topo.gpus] == expect["numa"]
    assert all(g.uuid and g.pci_bus_id and g.cpu_affinity for g in topo.gpus)


@pytest.mark.parametrize("name", GPU_MACHINES)
def test_profile_numbers_and_their_sources(name, tmp_path, bundled):
    found, expect, _ = detect(name, tmp_path, bundled)
    p, want = found.profile, expect["profile"]
    assert p.backend == "nccl" and p.gpus_per_node == 8 and p.nodes == 1
    assert p.domain_size == want["domain_size_gpus"]
    assert p.gpu.memory_gib.value == pytest.approx(want["memory_gib"], abs=0.01)
    assert p.gpu.memory_gib.basis == "measured" and "NVML" in p.gpu.memory_gib.source
    assert p.gpu.bf16_dense_tflops.source.startswith(f"bundled profile {want['bundled']}: ")
    assert p.price.usd_per_gpu_hour.source.startswith(f"bundled profile {want['bundled']}: ")
    assert p.pcie.generation == want["pcie_generation"]
    if want["domain_size_gpus"] > 1:
        assert p.nvlink.nvswitch == want["nvswitch"] and p.nvlink.generation == want["generation"]
        assert p.nvlink.per_gpu_unidir_gbps.value == pytest.approx(want["per_gpu_unidir_gbps"])
        assert "NVML on fixture" in p.nvlink.per_gpu_unidir_gbps.source
    else:
        assert p.nvlink is None
    if want["inter_node"]:
        assert p.inter_node.kind == want["inter_node"]
        assert p.inter_node.per_gpu_gbps.value == pytest.approx(want["per_gpu_gbps"])
        assert "sysfs on fixture" in p.inter_node.per_gpu_gbps.source
    else:
        assert p.inter_node is None
    assert [w.split(" (check")[0] for w in found.warnings] == expect["warnings"]


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("name", GPU_MACHINES)
def test_written_profile_loads_back_unchanged(name, compact, tmp_path, bundled):
    found, _, _ = detect(name, tmp_path, bundled)
    out = tmp_path / "profile.yaml"
    text = io.to_yaml(found.profile, compact=compact)
    io.write_text(out, text)
    assert io.load_profile(out) == found.profile
    if compact:  # a matrix row and an NVLink pair each on one line
        assert "\n  - [X, " in text
        assert "\n  - {gpus: [" in text or "pairs: []" in text


@pytest.mark.parametrize(
    ("name", "nodes", "tp", "crosses", "fabric"),
    [
        ("dgx-a100", 2, 16, True, "network"),
        ("dgx-a100", 2, 8, False, "nvlink"),
        ("dgx-h100", 2, 16, True, "network"),
        ("dgx-a100-link-down", 2, 16, True, "network"),
        ("a100-pcie-nvlink-pairs", 1, 4, True, "pcie"),
        ("a100-pcie-nvlink-pairs", 1, 2, False, "nvlink"),
        ("l40s-8x-pcie", 1, 2, True, "pcie"),
    ],
)
def test_candidates_flag_tp_crossing_the_detected_domain(name, nodes, tp, crosses, fabric, tmp_path, bundled):
    found, _, _ = detect(name, tmp_path, bundled, nodes=nodes)
    model = io.load_model("llama-3.1-70b")
    c = candidates.judge(
        model,
        found.profile,
        layout=Layout(tp=tp),
        engine="vllm",
        budget_gpus=found.profile.total_gpus,
        max_model_len=8192,
    )
    assert (c.crosses_nvlink_domain, c.tp_fabric) == (crosses, fabric)
    assert any("crosses the NVLink domain" in n for n in c.notes) == crosses


def test_one_link_down_warns_and_keeps_the_domain(tmp_path, bundled):
    found, _, _ = detect("dgx-a100-link-down", tmp_path, bundled)
    topo = found.profile.topology
    assert topo.domains == [list(range(8))] and found.profile.domain_size == 8
    gpu3 = topo.gpus[3]
    assert (gpu3.nvlinks_active, gpu3.nvlinks_total) == (11, 12)
    assert [k.link for k in topo.nvlinks if not k.active] == [7] and topo.nvlinks[3 * 12 + 7].gpu == 3
    assert any("GPU 3: NVLink 7 down" in n for n in found.profile.notes)


def test_links_name_their_remote_end(tmp_path, bundled):
    found, _, _ = detect("dgx-a100", tmp_path, bundled)
    topo = found.profile.topology
    assert topo.nvswitches == [f"00000000:C{i}:00.0" for i in range(4, 10)]
    assert {k.remote_kind for k in topo.nvlinks} == {"nvswitch"} and {k.version for k in topo.nvlinks} == {
        "3.1"
    }
    assert topo.nvlinks[0].remote_label() == "NVSwitch 00000000:C7:00.0"
    pairs, _, _ = detect("a100-pcie-nvlink-pairs", tmp_path / "b", bundled)
    assert {k.remote_label() for k in pairs.profile.topology.nvlinks if k.gpu == 2} == {"GPU3"}


def test_pairs_carry_link_count_and_rate(tmp_path, bundled):
    a100 = detect("dgx-a100-link-down", tmp_path, bundled)[0].profile.topology
    assert len(a100.pairs) == 28
    assert {(q.links, q.gbps) for q in a100.pairs if 3 in q.gpus} == {(11, 275.0)}
    assert {(q.links, q.gbps) for q in a100.pairs if 3 not in q.gpus} == {(12, 300.0)}
    bridged = detect("a100-pcie-nvlink-pairs", tmp_path / "b", bundled)[0].profile.topology
    assert [(q.gpus, q.links) for q in bridged.pairs] == [
        ([0, 1], 12),
        ([2, 3], 12),
        ([4, 5], 12),
        ([6, 7], 12),
    ]
    assert detect("l40s-8x-pcie", tmp_path / "c", bundled)[0].profile.topology.pairs == []


def test_hca_ports_and_nearest_gpus(tmp_path, bundled):
    found, _, _ = detect("dgx-h100", tmp_path, bundled)
    hcas = {h.label: h for h in found.profile.topology.hcas}
    assert hcas["mlx5_0"].rate == "400 Gb/sec (4X NDR)" and hcas["mlx5_0"].rate_gbit_per_s == 400
    assert (hcas["mlx5_0"].state, hcas["mlx5_0"].kind, hcas["mlx5_0"].pci_bus_id) == (
        "ACTIVE",
        "ib-ndr",
        "0000:18:00.0",
    )
    assert hcas["mlx5_0"].nearest_gpus == [0] and hcas["mlx5_11"].nearest_gpus == [7]
    assert hcas["mlx5_1"].nearest_gpus == [0, 1, 2, 3]  # storage port: nearest is its socket
    assert (hcas["mlx5_2"].state, hcas["mlx5_2"].link_layer, hcas["mlx5_2"].kind) == (
        "DOWN",
        "Ethernet",
        "roce",
    )
    a100, _, _ = detect("dgx-a100", tmp_path / "a", bundled)
    storage = {h.label: h for h in a100.profile.topology.hcas}["mlx5_4"]
    assert storage.nearest_gpus == [] and storage.numa_node == 0  # a NUMA node without GPUs


def test_init_failure_falls_back_to_a_cpu_profile(tmp_path, bundled):
    found, expect, fake = detect("nvml-init-fails", tmp_path, bundled)
    assert not found.gpu_found and expect["fallback"] in found.fallback_reason
    assert "different versions" in found.fallback_reason
    p = found.profile
    assert p.backend == "gloo" and p.nvlink is None and p.gpus_per_node >= 2
    assert p.topology.gpus == [] and len(p.topology.hcas) == 12  # sysfs still read
    assert fake.calls == ["nvmlInit"]
    assert all(q.source for q in (p.gpu.memory_gib, p.gpu.bf16_dense_tflops, p.gpu.hbm_gbps))


def test_a_gpu_that_stops_answering_is_reported_and_the_rest_written(tmp_path, bundled):
    lost = {
        "nvmlDeviceGetMemoryInfo:3": "NVML_ERROR_GPU_IS_LOST",
        "nvmlDeviceGetNvLinkRemotePciInfo:6:4": "NVML_ERROR_UNKNOWN",
    }
    found, _, _ = detect("dgx-a100", tmp_path, bundled, errors=lost)
    topo = found.profile.topology
    assert topo.errors == [
        "GPU 3: nvmlDeviceGetMemoryInfo failed with NVML_ERROR_GPU_IS_LOST (GPU is lost)",
        "GPU 6 NVLink 4: nvmlDeviceGetNvLinkRemotePciInfo failed with NVML_ERROR_UNKNOWN (Unknown Error)",
    ]
    assert topo.gpus[3].memory_mib is None and found.profile.gpu.memory_gib.value == 80
    assert topo.domains == [list(range(8))] and found.profile.domain_size == 8
    link = topo.nvlinks[6 * 12 + 4]
    assert link.active and link.remote_kind is None


def test_a_gpu_lost_entirely_keeps_the_node_shape(tmp_path, bundled):
    found, _, _ = detect(
        "dgx-a100", tmp_path, bundled, errors={"nvmlDeviceGetHandleByIndex:5": "NVML_ERROR_GPU_IS_LOST"}
    )
    p = found.profile
    assert p.gpus_per_node == 8 and p.domain_size == 8
    assert p.topology.gpus[5].name == "" and p.topology.matrix[5] == ["?"] * 5 + ["X"] + ["?"] * 2
    assert p.topology.matrix[0][1:5] == ["NV12"] * 4 and p.topology.matrix[0][5] == "?"
    assert any(
        w.startswith("GPU 5 did not answer (nvmlDeviceGetHandleByIndex failed with NVML_ERROR_GPU_IS_LOST)")
        for w in found.warnings
    )
    assert {h.label: h.gpu_levels[5] for h in p.topology.hcas}["mlx5_0"] == "?"


def test_node_count_from_flag_and_launcher_env(tmp_path, bundled):
    assert detect("dgx-h100", tmp_path / "a", bundled, nodes=4)[0].profile.nodes == 4
    slurm = detect("dgx-h100", tmp_path / "b", bundled, env={"SLURM_NNODES": "3"})[0].profile
    assert slurm.nodes == 3 and "nodes: 3 (SLURM_NNODES=3)" in slurm.notes
    torchrun = detect("dgx-h100", tmp_path / "c", bundled, env={"WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "8"})
    assert torchrun[0].profile.nodes == 2
