"""The sharded model against the whole one, in one process: each rank's shard run on the same input,
its row-parallel partial sums added up (what the all-reduce does), must equal the unsharded layer."""

from __future__ import annotations

import copy

import pytest
import torch

from tpplan.engines import split
from tpplan.specs import ModelSpec
from tpplan.sweep import model as M
from tpplan.sweep import shard as S

T = 12


def spec(**kw) -> ModelSpec:
    base = dict(
        name="t",
        architecture="LlamaForCausalLM",
        num_layers=2,
        hidden_size=96,
        num_attention_heads=6,
        num_kv_heads=6,
        head_dim=16,
        intermediate_size=160,
        vocab_size=300,
        max_position_embeddings=512,
    )
    return ModelSpec(**(base | kw))


GQA = spec(num_attention_heads=8, num_kv_heads=4)  # tiny's shape, smaller widths


def _parts(block: M.Block, tp: int, mode: str):
    """Each rank's attention and MLP outputs (partial sums) and its heads."""
    x = torch.randn(2, T, block.attention.wo.out_features, generator=torch.Generator().manual_seed(1))
    rope = M.rope_table(T, block.attention.head_dim, device=x.device, dtype=x.dtype)
    outs = []
    with torch.no_grad():
        for r in range(tp):
            b = copy.deepcopy(block)
            heads = S.apply_tp([b], tp, tp_rank=r, heads_mode=mode, all_reduce=None)
            outs.append((b.attention(x, rope), b.mlp(x), heads))
        full = (block.attention(x, rope), block.mlp(x))
    return outs, full


@pytest.mark.parametrize(
    ("s", "tp", "mode", "heads", "kv"),
    [
        (GQA, 2, "even", [4, 4], [2, 2]),  # KV heads split
        (GQA, 4, "even", [2] * 4, [1] * 4),
        (GQA, 8, "even", [1] * 8, [1] * 8),  # kv 4 < tp 8: each KV head replicated on 2 ranks
        (spec(), 4, "uneven", [2, 2, 1, 1], [2, 2, 1, 1]),
        (spec(), 4, "padded", [2, 2, 2, 2], [2, 2, 2, 2]),  # 6 heads + 2 zero heads
        (spec(num_kv_heads=2), 4, "uneven", [2, 2, 1, 1], [1, 2, 1, 1]),  # a rank straddling two groups
    ],
)
def test_partial_sums_equal_the_unsharded_layer(s, tp, mode, heads, kv):
    block = M.build_block(s, 0, seed=3)
    outs, (attn, mlp) = _parts(block, tp, mode)
    assert [len(h.q) for *_, h in outs] == heads
    assert [len(h.kv) for *_, h in outs] == kv
    torch.testing.assert_close(sum(o[0] for o in outs), attn, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sum(o[1] for o in outs), mlp, atol=1e-5, rtol=1e-5)


def test_kv_heads_are_replicated_like_vllm_when_fewer_than_tp():
    kv_of_head = [i // 2 for i in range(8)]  # 8 query heads in 4 GQA groups
    heads = [S.assign_heads(kv_of_head, 8, tp_rank=r) for r in range(8)]
    assert [h.kv for h in heads] == [
        [0],
        [0],
        [1],
        [1],
        [2],
        [2],
        [3],
        [3],
    ]  # rank r holds KV head r // (tp/kv)


def test_36_heads_at_tp8_split_5_and_4():
    counts = [len(S.assign_heads(list(range(36)), 8, tp_rank=r).q) for r in range(8)]
    assert counts == [5, 5, 5, 5, 4, 4, 4, 4] == split(36, 8)
    assert S.padded_heads(36, 8) == 40


def test_padded_model_equals_unpadded():
    s = spec()
    block = M.build_block(s, 0, seed=5)
    padded = copy.deepcopy(block)
    S.pad_heads(padded.attention, 8)
    assert padded.attention.n_head == 8 and padded.attention.wo.in_features == 8 * s.head_dim
    x = torch.randn(3, T, s.hidden_size)
    rope = M.rope_table(T, s.head_dim, device=x.device, dtype=x.dtype)
    with torch.no_grad():
        torch.testing.assert_close(padded(x, rope), block(x, rope), atol=1e-6, rtol=1e-6)


def test_one_allreduce_per_row_parallel_block_and_one_for_parallel_blocks():
    for s, per_layer in ((spec(), 2), (spec(parallel_attn_mlp=True), 1)):
        calls: list = []

        def count(t: torch.Tensor, calls: list = calls) -> torch.Tensor:
            calls.append(t.shape)
            return t

        blocks = [M.build_block(s, i, seed=0) for i in range(2)]
        S.apply_tp(blocks, 2, tp_rank=0, heads_mode="even", all_reduce=count)
        with torch.no_grad():
            M.Stack(blocks, None, s.head_dim)(torch.randn(1, T, s.hidden_size))
        assert len(calls) == 2 * per_layer
        assert all(c == (1, T, s.hidden_size) for c in calls)


def test_weights_are_a_function_of_seed_and_layer():
    s = spec()
    a, b, c = M.build_block(s, 1, seed=7), M.build_block(s, 1, seed=7), M.build_block(s, 2, seed=7)
    assert torch.equal(a.attention.wqkv.weight, b.attention.wqkv.weight)
    assert not torch.equal(a.attention.wqkv.weight, c.attention.wqkv.weight)


def test_reference_forward_is_the_stack_built_from_the_same_seed():
    s = GQA
    x = M.sample_input(s, 2, tokens=T, seed=0)
    stack = M.Stack([M.build_block(s, i, seed=0) for i in range(2)], M.build_norm(s, 0), s.head_dim)
    with torch.no_grad():
        torch.testing.assert_close(M.reference_forward(s, 2, x=x, seed=0), stack(x), atol=0, rtol=0)
    logits = M.last_token_logits(s, stack(x).detach(), seed=0)
    assert logits.shape == (2, s.vocab_size) and torch.isfinite(logits).all()
