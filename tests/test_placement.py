"""The engines' placement rule (tpplan/placement.py), shared by candidates and emit."""

from __future__ import annotations

import itertools

import pytest

from tpplan import placement


def test_a_multi_node_instance_runs_the_same_number_of_ranks_on_each_node():
    ranks, problem = placement.instance_gpus(8, 4, pp=3, replicas=1)
    assert problem is None and ranks == [[0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13]]
    assert placement.tp_groups(ranks[0], 4) == [[0, 1, 2, 3], [4, 5, 8, 9], [10, 11, 12, 13]]
    _, problem = placement.instance_gpus(8, 3, pp=3, replicas=1)
    assert "9 ranks do not split evenly over 2 nodes" in problem


def test_small_instances_pack_node_by_node():
    ranks, _ = placement.instance_gpus(8, 2, pp=1, replicas=5)
    assert ranks == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


@pytest.mark.parametrize("gpn", [4, 8, 72])
def test_extent_agrees_with_the_listed_ranks(gpn):
    for tp, pp, r in itertools.product([1, 2, 3, 4, 8, 16], [1, 2, 3, 5], [1, 2, 3, 7]):
        ranks, _ = placement.instance_gpus(gpn, tp, pp=pp, replicas=r)
        nodes = len({g // gpn for inst in ranks for g in inst})
        assert placement.extent(gpn, tp, pp=pp, replicas=r) == (nodes, max(max(inst) for inst in ranks))
