"""A decoder-layer stack at a ModelSpec's real widths: RMSNorm, GQA attention with RoPE, SwiGLU MLP.

Like gpt-fast's model.py, it knows nothing of parallelism: `shard.apply_tp` slices its weights
and adds the all-reduces. Weights are drawn from a generator seeded per (seed, layer, tensor),
so every rank builds bit-identical layers and the TP=1 reference needs no weight transfer.

Shapes: B batch, T tokens, D hidden, H query heads, K KV heads, d head dim, F FFN width.
"""

from __future__ import annotations

import math
import zlib

import torch
import torch.nn.functional as F
from torch import nn

from ..specs import ModelSpec
from .cases import ffn_width

ROPE_BASE = 10_000.0  # Llama-2's rope_theta; ModelSpec has none, and the cost is the same at any base
NORM_EPS = 1e-5
LM_HEAD_CHUNK = 8192  # vocabulary rows generated at a time for the logits check (bounds memory)

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class RMSNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, NORM_EPS)


class Attention(nn.Module):
    """Causal self-attention; query head i reads KV head `kv_of_head[i]` (GQA groups)."""

    def __init__(self, dim: int, n_head: int, n_kv: int, head_dim: int) -> None:
        super().__init__()
        self.n_head, self.n_kv, self.head_dim = n_head, n_kv, head_dim
        self.wqkv = nn.Linear(
            dim, (n_head + 2 * n_kv) * head_dim, bias=False
        )  # rows: [q heads; k heads; v heads]
        self.wo = nn.Linear(n_head * head_dim, dim, bias=False)
        self.register_buffer("kv_of_head", torch.arange(n_head) // (n_head // n_kv), persistent=False)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        B, T, _ = x.shape
        hd, q_w, kv_w = self.head_dim, self.n_head * self.head_dim, self.n_kv * self.head_dim
        q, k, v = self.wqkv(x).split([q_w, kv_w, kv_w], dim=-1)
        q = apply_rope(q.view(B, T, self.n_head, hd), rope)
        k = apply_rope(k.view(B, T, self.n_kv, hd), rope)
        v = v.view(B, T, self.n_kv, hd)
        # GQA: give every query head its group's K and V, (B, T, K, d) -> (B, T, H, d)
        k, v = k.index_select(2, self.kv_of_head), v.index_select(2, self.kv_of_head)
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        return self.wo(y.transpose(1, 2).reshape(B, T, q_w))  # (B, H, T, d) -> (B, T, H·d) -> (B, T, D)


class FeedForward(nn.Module):
    """SwiGLU (gate and up fused in one matrix, as vLLM's gate_up_proj) or a plain GELU MLP."""

    def __init__(self, dim: int, ffn: int, gated: bool) -> None:
        super().__init__()
        self.fused_parts = 2 if gated else 1
        self.up = nn.Linear(dim, self.fused_parts * ffn, bias=False)  # rows: [gate; up]
        self.down = nn.Linear(ffn, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused_parts == 2:
            gate, up = self.up(x).chunk(2, dim=-1)
            return self.down(F.silu(gate) * up)
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        D = spec.hidden_size
        self.parallel = spec.parallel_attn_mlp
        self.attention_norm = RMSNorm(D)
        self.attention = Attention(D, spec.num_attention_heads, spec.num_kv_heads, spec.head_dim)
        self.mlp_norm = RMSNorm(D)
        self.mlp = FeedForward(D, ffn_width(spec), spec.gated_mlp)
        self.merge = nn.Identity()  # attention + MLP of a parallel (Falcon-style) block

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        if self.parallel:
            h = self.attention_norm(x)
            return x + self.merge(self.attention(h, rope) + self.mlp(h))
        h = x + self.attention(self.attention_norm(x), rope)
        return h + self.mlp(self.mlp_norm(h))


class Stack(nn.Module):
    """Consecutive decoder layers (one pipeline stage's share), with the final norm on the last stage."""

    def __init__(self, blocks: list[Block], norm: RMSNorm | None, head_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(blocks)
        self.norm = norm
        self.head_dim = head_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rope = rope_table(x.shape[1], self.head_dim, device=x.device, dtype=x.dtype)
        for block in self.layers:
            x = block(x, rope)
        return self.norm(x) if self.norm is not None else x


def rope_table(
    T: int, head_dim: int, *, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (T, d/2): position t rotates pair i by t / base^(2i/d) (RoFormer)."""
    half = head_dim // 2
    inv_freq = 1.0 / ROPE_BASE ** (torch.arange(half, device=device, dtype=torch.float32) * 2 / head_dim)
    angles = torch.outer(torch.arange(T, device=device, dtype=torch.float32), inv_freq)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate the two halves of each head (HF Llama's rotate_half); x: (B, T, heads, d)."""
    cos, sin = (t[None, :, None, :] for t in rope)
    half = cos.shape[-1]
    x1, x2, rest = x[..., :half], x[..., half : 2 * half], x[..., 2 * half :]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest), dim=-1)


# ---- deterministic construction ------------------------------------------------------------
def _generator(seed: int, tag: str) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}/{tag}".encode()))


def init_weights(module: nn.Module, seed: int, *, tag: str) -> nn.Module:
    """Linear weights ~ N(0, 1/fan_in) (activations stay O(1) through depth); norm weights ~ 1 + N(0, 0.1²)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            g = _generator(seed, f"{tag}/{name}")
            if p.dim() == 2:
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]), generator=g)
            else:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
    return module


def build_block(spec: ModelSpec, layer: int, *, seed: int) -> Block:
    """Layer `layer` of the model in fp32 on the CPU, identical on every rank that builds it."""
    return init_weights(Block(spec), seed, tag=f"layer{layer}")


def build_norm(spec: ModelSpec, seed: int) -> RMSNorm:
    return init_weights(RMSNorm(spec.hidden_size), seed, tag="final_norm")


def sample_input(spec: ModelSpec, batch: int, *, tokens: int, seed: int) -> torch.Tensor:
    """Hidden states entering layer 0, (B, T, D) ~ N(0, 1): the embedding lookup is not measured."""
    return torch.randn(batch, tokens, spec.hidden_size, generator=_generator(seed, "input"))


@torch.no_grad()
def reference_forward(spec: ModelSpec, layers: int, *, x: torch.Tensor, seed: int) -> torch.Tensor:
    """The same layers at TP=1, built and run one at a time (memory: one full layer)."""
    rope = rope_table(x.shape[1], spec.head_dim, device=x.device, dtype=x.dtype)
    for i in range(layers):
        block = build_block(spec, i, seed=seed).to(device=x.device, dtype=x.dtype)
        x = block(x, rope)
        del block
    return build_norm(spec, seed).to(device=x.device, dtype=x.dtype)(x)


@torch.no_grad()
def last_token_logits(spec: ModelSpec, hidden: torch.Tensor, *, seed: int) -> torch.Tensor:
    """Logits of the last token, (B, D) @ (V, D)ᵀ -> (B, V) in fp32, the LM head generated in row chunks.

    A vocab-parallel LM head computes each logit whole on one rank, so this equals the engines'
    sharded head on the same hidden states."""
    last = hidden[:, -1].float()
    out = []
    for start in range(0, spec.vocab_size, LM_HEAD_CHUNK):
        rows = min(LM_HEAD_CHUNK, spec.vocab_size - start)
        w = torch.randn(rows, spec.hidden_size, generator=_generator(seed, f"lm_head/{start}")) / math.sqrt(
            spec.hidden_size
        )
        out.append(last @ w.to(last.device).t())
    return torch.cat(out, dim=-1)


def tolerance_ratio(actual: torch.Tensor, reference: torch.Tensor, *, atol: float, rtol: float) -> float:
    """max |actual − reference| / (atol + rtol·|reference|): ≤ 1 exactly when
    torch.allclose(actual, reference, rtol=rtol, atol=atol) holds (finite values).

    Both sides are computed as ATen's isclose does (TensorCompare.cpp: `allowed_error = atol + (rtol *
    other).abs()`, `actual_error = (self - other).abs()`), in the tensors' dtype, and only the
    quotient in fp64, so a Δ one ulp over its bound reads > 1. An element with a zero bound
    (atol 0, reference 0) and Δ > 0 is infinitely over it."""
    err = (actual - reference).abs()
    bound = atol + (rtol * reference).abs()
    ratio = torch.where(err == 0, 0.0, err.double() / bound.double())
    return ratio.max().item()
