"""Megatron-style tensor parallelism as a declarative plan, applied to a model that knows nothing of it.

Column-parallel QKV and MLP-up (each rank keeps some output rows), row-parallel attention-out and
MLP-down (each rank keeps the matching input columns and produces a partial sum), one all-reduce
after each row-parallel block (Shoeybi et al. 2019, §3; gpt-fast tp.py). Heads go to ranks in
contiguous runs; a rank stores the KV heads its query heads read, so KV heads are split when
kv_heads >= tp and replicated when kv_heads < tp, as vLLM's QKVParallelLinear does.

Heads that do not divide by tp take one of two forms:
- `uneven`: the first h mod tp ranks carry ⌈h/tp⌉ heads, the rest ⌊h/tp⌋;
- `padded`: zero heads are appended until tp divides them (zero query rows, zero output columns),
  so the outputs equal the unpadded model's and every rank carries h'/tp heads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..engines import split
from .model import Attention, Block

# Which submodule is split how (the plan), and after which outputs the partial sums are all-reduced.
PLAN: dict[str, str] = {
    "attention.wqkv": "colwise_heads",  # rows of this rank's q heads, then of its k and v heads
    "attention.wo": "rowwise_heads",  # columns of this rank's q heads
    "mlp.up": "colwise",  # this rank's slice of each fused part ([gate; up])
    "mlp.down": "rowwise",  # the matching columns
}
ALLREDUCE_AFTER = ("attention", "mlp")
ALLREDUCE_AFTER_PARALLEL = ("merge",)  # attention + MLP summed first: one all-reduce per layer

AllReduce = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Heads:
    """The heads one TP rank holds, as global indices."""

    q: list[int]
    kv: list[int]


def assign_heads(kv_of_head: list[int], tp: int, *, tp_rank: int) -> Heads:
    """Contiguous query heads (⌈h/tp⌉ on the first h mod tp ranks) and the KV heads they read."""
    counts = split(len(kv_of_head), tp)
    start = sum(counts[:tp_rank])
    q = list(range(start, start + counts[tp_rank]))
    return Heads(q=q, kv=sorted({kv_of_head[i] for i in q}))


def padded_heads(n_head: int, tp: int) -> int:
    return -(-n_head // tp) * tp


def pad_heads(attn: Attention, n_head: int) -> None:
    """Append zero query heads up to `n_head` (and zero KV heads too when every head has its own KV).

    A zero query row gives uniform attention weights, and the zero wo columns drop whatever that
    head outputs: the layer's result is unchanged, only its work grows."""
    extra = n_head - attn.n_head
    if extra <= 0:
        return
    hd, dim = attn.head_dim, attn.wo.out_features
    mha = attn.n_kv == attn.n_head
    n_kv = n_head if mha else attn.n_kv
    q, k, v = attn.wqkv.weight.split([attn.n_head * hd, attn.n_kv * hd, attn.n_kv * hd])
    zeros = q.new_zeros(extra * hd, dim)
    kv_pad = [zeros] if mha else []
    wqkv = torch.cat([q, zeros, k, *kv_pad, v, *kv_pad])
    wo = torch.cat([attn.wo.weight, attn.wo.weight.new_zeros(dim, extra * hd)], dim=1)
    # pad heads read their own zero KV head (MHA) or the last group's (GQA); either way wo drops them
    kv_extra = torch.arange(attn.n_head, n_head) if mha else torch.full((extra,), attn.n_kv - 1)
    attn.kv_of_head = torch.cat([attn.kv_of_head, kv_extra])
    _set(attn.wqkv, wqkv)
    _set(attn.wo, wo)
    attn.n_head, attn.n_kv = n_head, n_kv


def apply_tp(
    blocks: list[Block], tp: int, *, tp_rank: int, heads_mode: str, all_reduce: AllReduce | None
) -> Heads:
    """Shard each block for rank `tp_rank` of `tp` per PLAN, in place; returns this rank's heads.

    `all_reduce` (None at tp=1) is hooked after each row-parallel output."""
    heads = Heads([], [])
    for block in blocks:
        attn = block.attention
        if heads_mode == "padded":
            pad_heads(attn, padded_heads(attn.n_head, tp))
        heads = assign_heads(attn.kv_of_head.tolist(), tp, tp_rank=tp_rank)
        ffn = block.mlp.down.in_features
        sizes = split(ffn, tp)
        ffn_cols = range(sum(sizes[:tp_rank]), sum(sizes[: tp_rank + 1]))
        for path, style in PLAN.items():
            _shard(block.get_submodule(path), style, attn, heads, ffn, ffn_cols, block.mlp.fused_parts)
        local_kv = {g: i for i, g in enumerate(heads.kv)}
        attn.kv_of_head = torch.tensor([local_kv[int(attn.kv_of_head[i])] for i in heads.q], dtype=torch.long)
        attn.n_head, attn.n_kv = len(heads.q), len(heads.kv)
        if all_reduce is not None and tp > 1:
            for name in ALLREDUCE_AFTER_PARALLEL if block.parallel else ALLREDUCE_AFTER:
                block.get_submodule(name).register_forward_hook(lambda _m, _i, out: all_reduce(out))
    return heads


def _shard(
    linear: nn.Module, style: str, attn: Attention, heads: Heads, ffn: int, ffn_cols: range, parts: int
) -> None:
    assert isinstance(linear, nn.Linear)
    w, hd = linear.weight, attn.head_dim
    if style == "colwise_heads":
        q, k, v = w.split([attn.n_head * hd, attn.n_kv * hd, attn.n_kv * hd])
        _set(linear, torch.cat([_rows(q, heads.q, hd), _rows(k, heads.kv, hd), _rows(v, heads.kv, hd)]))
    elif style == "rowwise_heads":
        _set(linear, _rows(w.t(), heads.q, hd).t())
    elif style == "colwise":
        _set(linear, torch.cat([part[ffn_cols.start : ffn_cols.stop] for part in w.split(ffn)], dim=0))
        assert len(w.split(ffn)) == parts
    elif style == "rowwise":
        _set(linear, w[:, ffn_cols.start : ffn_cols.stop])
    else:
        raise ValueError(f"unknown sharding style {style!r}")


def _rows(w: torch.Tensor, heads: list[int], hd: int) -> torch.Tensor:
    """The rows of `heads` (each hd rows) of a (heads·hd, D) matrix."""
    idx = torch.tensor([h * hd + j for h in heads for j in range(hd)], dtype=torch.long)
    return w.index_select(0, idx)


def _set(linear: nn.Linear, weight: torch.Tensor) -> None:
    linear.weight = nn.Parameter(weight.contiguous(), requires_grad=False)
    linear.out_features, linear.in_features = weight.shape
