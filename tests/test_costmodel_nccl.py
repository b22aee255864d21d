"""All-reduce across nodes as NCCL picks and prices it; every profile's collective numbers sourced;
the error against held-apart nccl-tests tables (tests/data/collectives/) bounded."""

from __future__ import annotations

import pytest

from bench.collective_tables import median_abs_pct, multinode_errors, singlenode_errors
from tpplan import api, io
from tpplan.bundled import bundled_names
from tpplan.costmodel import Params
from tpplan.costmodel.collectives import allreduce_time, network_choices, network_params

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


def _algorithm(profile: str, nbytes: int, ranks: int) -> str:
    return api.estimate_allreduce(profile, nbytes=nbytes, ranks=ranks).algorithm


def test_small_messages_across_nodes_take_the_tree_large_ones_a_ring():
    for profile in ("dgx-a100-80g", "dgx-h100", "hgx-b200"):
        assert _algorithm(profile, 8 * KiB, 16).startswith("tree/LL")
        assert _algorithm(profile, 8 * KiB, 64).startswith("tree/LL")
    assert _algorithm("dgx-a100-80g", 8 * GiB, 32) == "ring/Simple"  # no NVLS: ring for bulk
    assert _algorithm("dgx-h100", 8 * GiB, 64) == "ring/Simple"  # beyond 2 nodes NVLS-tree halves


def test_nvls_tree_where_nvswitch_reduces_and_never_without_it():
    assert _algorithm("dgx-h100", 1 * GiB, 16) == "nvls_tree/Simple"
    assert _algorithm("hgx-b200", 8 * GiB, 16) == "nvls_tree/Simple"
    params = Params(io.load_profile("dgx-a100-80g"))  # NVLink3 has no in-switch reduction
    assert all(c.algorithm != "nvls_tree" for c in network_choices(params, 1 * GiB, ranks=16))


def test_collnet_only_where_the_switches_reduce():
    profile = io.load_profile("hgx-b200")
    assert all(c.algorithm != "collnet" for c in network_choices(Params(profile), GiB, ranks=64))
    assert profile.inter_node is not None
    sharp = network_params(profile).model_copy(update={"in_network_reduction": True})
    fabric = profile.inter_node.model_copy(update={"allreduce": sharp})
    with_sharp = Params(profile.model_copy(update={"inter_node": fabric}))
    assert allreduce_time(with_sharp, 8 * GiB, ranks=64, fabric="network").algorithm == "collnet/Simple"


@pytest.mark.parametrize(
    "profile,ranks", [("dgx-h100", 16), ("dgx-h100", 64), ("dgx-a100-80g", 16), ("hgx-b200", 32)]
)
def test_time_grows_with_the_message(profile: str, ranks: int):
    times = [api.estimate_allreduce(profile, nbytes=1 << k, ranks=ranks).latency_us for k in range(3, 35)]
    assert all(b >= a for a, b in zip(times, times[1:], strict=False))


def test_the_issue_figures_two_nodes():
    """Issue 14: 2-node busbw levelled at ~300 (H100) / ~405 (B200) where NCCL measures ~467 and 620-700."""
    assert 430 < api.estimate_allreduce("dgx-h100", nbytes=8 * GiB, ranks=16).busbw_gbps < 560
    assert 600 < api.estimate_allreduce("hgx-b200", nbytes=8 * GiB, ranks=16).busbw_gbps < 740
    assert api.estimate_allreduce("dgx-h100", nbytes=8, ranks=16).latency_us < 40  # was ~63 us


@pytest.mark.parametrize("name", bundled_names("hardware_profiles"))
def test_every_profile_has_sourced_collective_numbers(name: str):
    profile = io.load_profile(name)
    assert profile.efficiency and profile.efficiency.allreduce, f"{name}: no all-reduce curves"
    for fit in profile.efficiency.allreduce:
        assert fit.basis in ("fitted", "published", "derived", "assumed") and len(fit.source) > 20
    if profile.inter_node:
        net = profile.inter_node.allreduce
        assert net is not None and net.basis in ("fitted", "derived", "assumed") and len(net.source) > 20


def test_held_apart_tables_stay_within_the_bound():
    """Median |error| per held-apart table <= 20% (issue 14), except the one VM table whose NVLS was
    off (together_h100_1n: its busbw stops at the ring's 369 GB/s); its bound says so."""
    for table, errs in {**multinode_errors("heldout"), **singlenode_errors("heldout")}.items():
        bound = 45 if table == "together_h100_1n" else 20
        assert median_abs_pct(errs) <= bound, (table, median_abs_pct(errs))


def test_cli_names_the_algorithm_it_priced_across_nodes():
    from click.testing import CliRunner

    from tpplan.cli import cli

    args = ["estimate", "allreduce", "--profile", "dgx-h100", "--bytes", "8GiB", "--ranks", "32"]
    r = CliRunner().invoke(cli, args)
    assert (
        r.exit_code == 0
        and "ring/Simple" in r.output
        and "NCCL ring/Simple over 4 nodes x 8 GPUs" in r.output
    )


def test_the_committed_multinode_table_is_what_the_script_derives():
    import csv
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(repo))
    from scripts.derive_collective_tables import DATA, multinode_rows

    with open(DATA / "multinode_allreduce.csv", newline="") as f:
        committed = list(csv.DictReader(f))
    derived = [{k: str(v) for k, v in r.items()} for r in multinode_rows()]
    assert committed == derived
