"""Where each rank of each instance runs, as the engines start them. One rule, used by the
candidates stage (which links a TP group crosses, so the cost model prices the right fabric) and by
emit (which GPUs each launched process gets), so a plan is priced on the placement it is launched on.

- An instance that fits a node is packed node by node in GPU order: instance k of R takes the k-th
  block of world_size GPUs (several instances share a node).
- A larger instance takes ceil(world_size / gpus_per_node) whole nodes and starts world_size / nnodes
  ranks on each: vLLM's multi-node launch (`--nnodes`, `--node-rank`), SGLang's `--nnodes` and
  torchrun's `--nproc-per-node` all start the same number of ranks per node. Ranks are DP × PP × TP
  with TP innermost (vLLM's and Megatron's rank order), so rank r of an instance runs on its node
  r // local, local GPU r % local.

So TP=4 × PP=3 on 8-GPU nodes runs 6 + 6 ranks: its second TP group (ranks 4-7) spans both nodes.
"""

from __future__ import annotations

import math


def instance_gpus(
    gpus_per_node: int, tp: int, *, pp: int, replicas: int
) -> tuple[list[list[int]], str | None]:
    """Global GPU index (node * gpus_per_node + local GPU) of every rank of every instance, and why
    the engines cannot start the layout this way (None when they can). When world_size does not split
    evenly over the nodes it needs, the ranks are packed contiguously so callers can still describe it."""
    world = tp * pp
    if world <= gpus_per_node:
        per_node = gpus_per_node // world
        out = []
        for k in range(replicas):
            node, slot = divmod(k, per_node)
            first = node * gpus_per_node + slot * world
            out.append(list(range(first, first + world)))
        return out, None
    span = math.ceil(world / gpus_per_node)
    if world % span:
        problem = (
            f"an instance of TP×PP = {world} GPUs needs {span} nodes of {gpus_per_node}, but {world} ranks "
            f"do not split evenly over {span} nodes (vLLM, SGLang and torchrun start world_size / nnodes "
            f"ranks on each node); choose tp × pp divisible by {span}"
        )
        return [
            list(range(k * span * gpus_per_node, k * span * gpus_per_node + world)) for k in range(replicas)
        ], problem
    local = world // span
    return [
        [(k * span + r // local) * gpus_per_node + r % local for r in range(world)] for k in range(replicas)
    ], None


def extent(gpus_per_node: int, tp: int, *, pp: int, replicas: int) -> tuple[int, int]:
    """(nodes used, highest global GPU index) of instance_gpus' placement, without listing every rank
    (candidates judges thousands of layouts of a large budget)."""
    world, last = tp * pp, replicas - 1
    if world <= gpus_per_node:
        per_node = gpus_per_node // world
        node, slot = divmod(last, per_node)
        return node + 1, node * gpus_per_node + slot * world + world - 1
    span = math.ceil(world / gpus_per_node)
    if world % span:  # packed contiguously (instance_gpus' fallback)
        top = last * span * gpus_per_node + world - 1
        return top // gpus_per_node + 1, top
    return span * replicas, (last * span + span - 1) * gpus_per_node + world // span - 1


def tp_groups(ranks: list[int], tp: int) -> list[list[int]]:
    """The GPUs of each TP group of one instance (TP innermost: consecutive ranks)."""
    return [ranks[i : i + tp] for i in range(0, len(ranks), tp)]


def role_gpus(
    gpus_per_node: int, groups: list[tuple[int, int, int]]
) -> tuple[list[list[list[int]]], str | None]:
    """Global GPUs of every rank of every instance of several instance kinds placed one after another
    (disaggregated serving: the prefill instances, then the decode instances), each group given as
    (tp, pp, count). An instance within a node is packed at the next free GPUs of a node it fits in
    whole; a larger one starts on a fresh node and spreads its ranks evenly, as instance_gpus does.
    Returns the GPUs per group and instance, and why the engines cannot start it so (None: they can)."""
    cursor, out, problem = 0, [], None
    for tp, pp, count in groups:
        world = tp * pp
        placed = []
        for _ in range(count):
            if world <= gpus_per_node:
                if cursor % gpus_per_node + world > gpus_per_node:  # would straddle a node: next node
                    cursor = -(-cursor // gpus_per_node) * gpus_per_node
                placed.append(list(range(cursor, cursor + world)))
                cursor += world
                continue
            first = -(-cursor // gpus_per_node)  # a fresh node
            ranks, problem_here = instance_gpus(gpus_per_node, tp, pp=pp, replicas=1)
            placed.append([g + first * gpus_per_node for g in ranks[0]])
            problem = problem or problem_here
            cursor = (first + math.ceil(world / gpus_per_node)) * gpus_per_node
        out.append(placed)
    return out, problem
