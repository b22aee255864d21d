"""NVML calls that fail on one GPU or link: the answer is unknown, never "down" or "absent".

Each case injects per-call NVML errors into a real machine's fixture (as a reviewer did with a
copy of dgx-a100.yaml) and checks the domains, the domain size of the written profile, the
warning text, and what `tpplan candidates` then says about a TP group of 8.
"""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner
from fakes import FIXTURES, load_fixture, machine, sysfs

from tpplan import io, topology
from tpplan.cli import cli

EIGHT = list(range(8))
CASES = {
    # All 12 links of GPU 0 are up but their remote ends cannot be read; every other GPU reaches
    # NVSwitches with 12 links: GPU 0 is assumed like them, the domain stays 8.
    "remote-unread-like-peers": (
        "dgx-a100",
        {"nvmlDeviceGetNvLinkRemotePciInfo:0": "NVML_ERROR_UNKNOWN"},
        [EIGHT],
        8,
        [
            "GPU 0 NVLink 0-11 up but its remote end unknown (nvmlDeviceGetNvLinkRemotePciInfo failed with "
            "NVML_ERROR_UNKNOWN); assumed to reach NVSwitch like its peers",
            "NVLink domain size 8 counts GPU(s) 0 as assumed",
        ],
    ),
    # The same, but GPU 3 has a link down: the peers do not all have 12 links, so GPU 0's domain is
    # unknown, left out of the domain size instead of shrinking it to 1.
    "remote-unread-peers-differ": (
        "dgx-a100-link-down",
        {"nvmlDeviceGetNvLinkRemotePciInfo:0": "NVML_ERROR_UNKNOWN"},
        [[0], [1, 2, 3, 4, 5, 6, 7]],
        8,
        [
            "GPU 0 NVLink 0-11 up but its remote end unknown (nvmlDeviceGetNvLinkRemotePciInfo failed with "
            "NVML_ERROR_UNKNOWN); its peers do not all reach NVSwitches with as many links, so GPU 0's "
            "NVLink domain is unknown",
            "NVLink domain of GPU(s) 0 unknown: the domain size 8 comes from GPU(s) 1-7; "
            "GPU(s) 0 assumed in domain i // 8 like their peers",
        ],
    ),
    # On bridged pairs both GPUs of pair 0-1 fail to read their remotes: their domain is unknown,
    # the other pairs still give domains of 2.
    "remote-unread-bridged-pair": (
        "a100-pcie-nvlink-pairs",
        {
            "nvmlDeviceGetNvLinkRemotePciInfo:0": "NVML_ERROR_GPU_IS_LOST",
            "nvmlDeviceGetNvLinkRemotePciInfo:1": "NVML_ERROR_GPU_IS_LOST",
        },
        [[0], [1], [2, 3], [4, 5], [6, 7]],
        2,
        ["NVLink domain of GPU(s) 0-1 unknown: the domain size 2 comes from GPU(s) 2-7"],
    ),
    # GPU 3 gives no handle at all: its links and domain are unknown; the size comes from the rest.
    "gpu-without-handle": (
        "dgx-a100",
        {"nvmlDeviceGetHandleByIndex:3": "NVML_ERROR_GPU_IS_LOST"},
        [[0, 1, 2, 4, 5, 6, 7], [3]],
        8,
        [
            "GPU 3 did not answer (nvmlDeviceGetHandleByIndex failed with NVML_ERROR_GPU_IS_LOST): "
            "its NVLinks and NVLink domain are unknown, not absent",
            "NVLink domain of GPU(s) 3 unknown: the domain size 8 comes from GPU(s) 0-2, 4-7; "
            "GPU(s) 3 assumed in domain i // 8 like their peers",
        ],
    ),
    # The state of GPU 1's link 4 cannot be read: unknown, not down.
    "state-unread": (
        "dgx-a100",
        {"nvmlDeviceGetNvLinkState:1:4": "NVML_ERROR_UNKNOWN"},
        [EIGHT],
        8,
        [
            "could not read NVLink 4 state of GPU 1: NVML_ERROR_UNKNOWN (nvmlDeviceGetNvLinkState); "
            "state unknown, not counted as down",
            "NVLink bandwidth per GPU counts 12 links (fewest of GPUs 0, 2-7); GPU(s) 1 have links of "
            "unknown state and are assumed like them",
        ],
    ),
}


@pytest.fixture(scope="module")
def bundled():
    return [p for _, p in io.bundled_profiles()]


@pytest.mark.parametrize("case", CASES)
def test_unknown_answers_are_neither_down_nor_a_domain_of_one(case, tmp_path, bundled):
    name, errors, domains, size, said = CASES[case]
    fake, root, _ = machine(name, tmp_path, errors)
    found = topology.detect(
        bundled, None, nvml_module=fake, sysfs_root=root, env={}, host="t", date="2026-01-01"
    )
    p = found.profile
    assert p.topology.domains == domains
    assert p.domain_size == size and p.nvlink.domain_size_gpus == size
    for text in said:
        assert any(w.startswith(text) for w in found.warnings), (text, found.warnings)
    assert not any("down while its peers" in w and "GPU 3" not in w for w in found.warnings)
    assert p.topology.errors, "the failed calls stay listed as errors"
    written = tmp_path / "written.yaml"
    io.write_text(written, io.to_yaml(p))
    assert io.load_profile(written).domain_size == size


def test_assumed_links_count_like_their_peers(tmp_path, bundled):
    fake, root, _ = machine(
        "dgx-a100", tmp_path, {"nvmlDeviceGetNvLinkRemotePciInfo:0": "NVML_ERROR_UNKNOWN"}
    )
    found = topology.detect(
        bundled, None, nvml_module=fake, sysfs_root=root, env={}, host="t", date="2026-01-01"
    )
    topo = found.profile.topology
    gpu0 = [k for k in topo.nvlinks if k.gpu == 0]
    # The record stays what NVML said (up, remote unread); only the structure assumes the switches.
    assert all(k.active and k.remote_bus_id is None and k.remote_kind is None for k in gpu0)
    assert topo.matrix[0][1:] == ["NV12"] * 7
    assert found.profile.nvlink.per_gpu_unidir_gbps.value == 300


def test_state_unread_is_counted_in_the_total_not_as_inactive(tmp_path, bundled):
    fake, root, _ = machine("dgx-a100", tmp_path, {"nvmlDeviceGetNvLinkState:1:4": "NVML_ERROR_UNKNOWN"})
    found = topology.detect(
        bundled, None, nvml_module=fake, sysfs_root=root, env={}, host="t", date="2026-01-01"
    )
    topo = found.profile.topology
    assert (topo.gpus[1].nvlinks_active, topo.gpus[1].nvlinks_total) == (11, 12)
    assert not [k for k in topo.nvlinks if not k.active]  # no link recorded as down
    assert "GPU(s) 1 with links of unknown state assumed" in found.profile.nvlink.per_gpu_unidir_gbps.source


def _fixture_with_errors(tmp_path, name: str, errors: dict[str, str]):
    path = tmp_path / f"{name}-errors.yaml"
    path.write_text(yaml.safe_dump({"extends": str(FIXTURES / f"{name}.yaml"), "nvml": {"errors": errors}}))
    root = sysfs.build(load_fixture(path), tmp_path / "root")
    return {"TPPLAN_FAKE_NVML": str(path), "TPPLAN_SYSFS_ROOT": str(root)}


@pytest.mark.parametrize(
    "case", ["remote-unread-like-peers", "remote-unread-peers-differ", "gpu-without-handle"]
)
def test_detected_profile_keeps_tp8_inside_the_domain(case, tmp_path, monkeypatch):
    for var in ("SLURM_NNODES", "SLURM_JOB_NUM_NODES", "GROUP_WORLD_SIZE", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    name, errors, _, size, said = CASES[case]
    out = tmp_path / "detected.yaml"
    runner = CliRunner()
    done = runner.invoke(cli, ["detect", "--out", str(out)], env=_fixture_with_errors(tmp_path, name, errors))
    assert done.exit_code == 0, done.output
    assert said[0] in done.output.replace("\n", " ")  # the warning reaches the user
    assert io.load_profile(out).domain_size == size
    cand = runner.invoke(cli, ["candidates", "llama-3.1-70b", "--profile", str(out), "--tp", "8"])
    assert cand.exit_code == 0, cand.output
    assert "crosses the NVLink domain" not in cand.output and "(crosses)" not in cand.output
