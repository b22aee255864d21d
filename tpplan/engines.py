"""What each engine accepts for a TP×PP layout, and how it places heads and layers.

The rules are the engines' own, as read from their sources (reference/engines/README.md):
vLLM 0.33.0, SGLang 0.5.23, Megatron-LM @d98e8a64. Each reason names the rule's source line
so a user can check it. Architecture support lists are data, not name-matching logic: the bundled
tpplan/data/engine_archs.json, which names the engine source each list was read from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

from . import moe_rules
from .memory import padded_vocab, pp_split
from .records import Reason
from .specs import ModelSpec

Engine = Literal["vllm", "megatron", "sglang"]
ENGINES: tuple[Engine, ...] = ("vllm", "megatron", "sglang")

GIB_MIB = 1024


@dataclass(frozen=True)
class EngineDefaults:
    """What an engine does when the user sets nothing: memory share and batch sizes."""

    memory_fraction: float
    memory_fraction_source: str
    max_num_batched_tokens: int  # tokens in one forward pass (what activation memory is profiled with)
    max_num_seqs: int


def vllm_defaults(gpu_name: str, memory_gib: float) -> EngineDefaults:
    """`vllm serve` batch defaults by GPU (vllm/engine/arg_utils.py:2940-3005, get_batch_defaults):
    >= 160 GiB: 16384 tokens / 1024 seqs; >= 70 GiB and not an A100: 8192 / 1024; else 2048 / 256."""
    if memory_gib >= 160:
        tokens, seqs = 16384, 1024
    elif memory_gib >= 70 and "a100" not in gpu_name.lower():
        tokens, seqs = 8192, 1024
    else:
        tokens, seqs = 2048, 256
    return EngineDefaults(
        0.92, "vLLM 0.33.0 default gpu_memory_utilization (vllm/config/cache.py:215)", tokens, seqs
    )


def sglang_defaults(memory_gib: float, tp: int, *, pp: int, mla: bool) -> EngineDefaults:
    """SGLang 0.5.23's automatic mem_fraction_static (sglang/srt/arg_groups/memory_hook.py:47-330):
    reserved MiB = 512 + 1.5·max(chunk, 2048) + tp·pp/8·1024 + CUDA-graph reserve, at least 10 GiB
    above 60 GiB; fraction = (mem − reserved) / mem. Chunk and decode-graph batch grow with memory."""
    mib = memory_gib * GIB_MIB
    table = [
        (20, 2048, 8, 8),
        (35, 4096, 48, 160),
        (60, 4096, 32, 160),
        (90, 8192, 256, 512),
        (160, 8192, 256, 512),
    ]
    chunk, decode_bs = 16384, 512
    for limit_gib, c, bs_small_tp, bs_large_tp in table:
        if memory_gib < limit_gib:
            chunk, decode_bs = c, (bs_small_tp if tp < 4 else bs_large_tp)
            break
    # decode graphs cost ~2 MiB per batch slot; prefill graphs ~464 MiB (1536 MiB with MLA)
    graphs = decode_bs * 2 + (1536 if mla else 464)
    reserved = 512 + 1.5 * max(chunk, 2048) + tp * pp / 8 * 1024 + graphs
    if memory_gib > 60:
        reserved = max(reserved, 10 * GIB_MIB)
    fraction = round((mib - reserved) / mib, 3)
    return EngineDefaults(
        fraction, "SGLang 0.5.23 automatic mem_fraction_static (memory_hook.py)", chunk, decode_bs
    )


def megatron_defaults() -> EngineDefaults:
    return EngineDefaults(
        0.90,
        "assumed: Megatron-LM has no memory-fraction setting; 10% kept for context and fragmentation",
        8192,
        256,
    )


def defaults(
    engine: Engine, gpu_name: str, *, memory_gib: float, tp: int, pp: int, model: ModelSpec
) -> EngineDefaults:
    if engine == "vllm":
        return vllm_defaults(gpu_name, memory_gib)
    if engine == "sglang":
        return sglang_defaults(memory_gib, tp, pp=pp, mla=model.mla is not None)
    return megatron_defaults()


@dataclass
class Verdict:
    """An engine's view of one TP×PP layout of a model."""

    ok: bool
    reasons: list[Reason]  # kind "engine", each naming the rule's source line
    heads_per_rank: list[int]
    kv_heads_per_rank: list[int]
    layers_per_stage: list[int]


def split(total: int, parts: int) -> list[int]:
    """An even split, or ⌈t/p⌉ on the first ranks and ⌊t/p⌋ on the rest when it is uneven."""
    q, r = divmod(total, parts)
    return [q + 1] * r + [q] * (parts - r)


def divisors_upto(n: int, limit: int) -> list[int]:
    return [d for d in range(1, min(n, limit) + 1) if n % d == 0]


def _kv_per_rank(model: ModelSpec, tp: int) -> list[int]:
    """KV heads each rank stores: split when kv >= tp, replicated (1 each) when tp is a multiple of kv."""
    kv = model.num_kv_heads
    if model.mla:
        return [1] * tp  # one latent cache, identical on every rank
    if kv < tp and tp % kv == 0:
        return [1] * tp
    return split(kv, tp)


def _rule(text: str, source: str | None = None, hint: str | None = None) -> Reason:
    return Reason(kind="engine", text=text, source=source, hint=hint)


def _tp_shape_reasons(engine: Engine, model: ModelSpec, tp: int) -> list[Reason]:
    """The engine's TP divisibility rules; empty when tp is acceptable."""
    h, kv, reasons = model.num_attention_heads, model.num_kv_heads, []
    name = {"vllm": "vLLM", "sglang": "SGLang", "megatron": "Megatron-LM"}[engine]
    where = {
        "vllm": "vllm/config/model.py:1556-1563",
        "sglang": "sglang/srt/models/llama.py:183",
        "megatron": "megatron/core/transformer/transformer_config.py:1446-1450",
    }[engine]
    if h % tp:
        reasons.append(_rule(f"num_attention_heads ({h}) is not divisible by tp ({tp})", f"{name}: {where}"))
    if not model.mla:
        if engine == "megatron":
            if kv % tp and tp % kv:
                reasons.append(
                    _rule(
                        f"num_query_groups ({kv}) and tp ({tp}) divide neither way",
                        "Megatron-LM: transformer_config.py:1461-1468",
                    )
                )
        elif kv >= tp and kv % tp:
            reasons.append(
                _rule(
                    f"num_kv_heads ({kv}) is not divisible by tp ({tp}) at load", f"{name}: QKVParallelLinear"
                )
            )
        elif kv < tp and tp % kv:
            reasons.append(
                _rule(
                    f"tp ({tp}) is not a multiple of num_kv_heads ({kv}), so KV heads cannot be replicated at load",
                    f"{name}: QKVParallelLinear",
                )
            )
    # Column-parallel MLP-up asserts divide(out, tp). vLLM/SGLang merge gate and up but check each
    # (linear.py:731); Megatron checks the fused width, 2·ffn when gated (tensor_parallel/layers.py).
    ffn = model.intermediate_size
    ffn_out = 2 * ffn if engine == "megatron" and model.gated_mlp else ffn
    if model.has_dense_mlp and ffn_out % tp:
        reasons.append(
            _rule(
                f"intermediate_size ({ffn}) is not divisible by tp ({tp})",
                f"{name}: column-parallel MLP asserts divisibility",
            )
        )
    shared = model.moe.shared_expert_intermediate_size if model.moe else 0
    if shared and shared % tp:
        reasons.append(
            _rule(
                f"shared-expert width ({shared}) is not divisible by tp ({tp})", f"{name}: shared-expert MLP"
            )
        )
    if engine != "megatron" and padded_vocab(model) % tp:
        reasons.append(
            _rule(
                f"padded vocabulary ({padded_vocab(model)}) is not divisible by tp ({tp})",
                f"{name}: VocabParallelEmbedding",
            )
        )
    return reasons


@dataclass(frozen=True)
class ArchTables:
    """The architecture lists of tpplan/data/engine_archs.json."""

    vllm: frozenset[str]  # in vLLM 0.33's model registry
    vllm_removed: frozenset[str]  # vLLM 0.33 raises "supported until vX" for these
    sglang_no_pp: frozenset[str]  # SGLang 0.5.23 classes whose forward takes no pp_proxy_tensors


@cache
def arch_tables() -> ArchTables:
    """Read once per process (shipped inside the package, so a wheel carries it)."""
    doc = json.loads(resources.files(__package__).joinpath("data", "engine_archs.json").read_text())
    return ArchTables(
        frozenset(doc["vllm"]["architectures"]["names"]),
        frozenset(doc["vllm"]["removed"]["names"]),
        frozenset(doc["sglang"]["no_pipeline_parallel"]["names"]),
    )


def _architecture_reasons(engine: Engine, arch: str, pp: int) -> list[Reason]:
    archs = arch_tables()
    if engine == "vllm":
        if arch in archs.vllm_removed:
            return [_rule(f"vLLM 0.33 removed {arch} (registry: previously supported models)")]
        if arch not in archs.vllm:
            return [
                _rule(
                    f"{arch} is not in vLLM 0.33's model registry (its Transformers backend may still load it "
                    "with --model-impl transformers)"
                )
            ]
        return []
    if pp > 1 and arch in archs.sglang_no_pp:
        return [
            _rule(
                f"SGLang's {arch} does not support pipeline parallelism (model_runner.py:508-515); pp must be 1"
            )
        ]
    return []


def accepted_tp(engine: Engine, model: ModelSpec, *, limit: int) -> list[int]:
    """Every tp up to `limit` that passes the engine's TP shape rules (only divisors of the head
    count can: every engine requires heads % tp == 0, so the others are not checked one by one)."""
    h = model.num_attention_heads
    return [t for t in range(1, min(limit, h) + 1) if h % t == 0 and not _tp_shape_reasons(engine, model, t)]


def check(
    engine: Engine, model: ModelSpec, *, tp: int, pp: int, tp_limit: int = 64, ep: int = 1, dp: int = 1
) -> Verdict:
    """The engine's verdict on running `model` at tp × pp, with expert parallelism over `ep` of the tp
    GPUs and `dp` data-parallel attention groups (moe_rules.py)."""
    reasons = _tp_shape_reasons(engine, model, tp)
    if reasons:
        ok_tp = ", ".join(map(str, accepted_tp(engine, model, limit=max(tp_limit, tp)))) or "none"
        reasons.append(_rule(f"{engine} accepts tp in {ok_tp}"))
    reasons += moe_rules.reasons(engine, model, tp=tp, pp=pp, ep=ep, dp=dp)
    L = model.num_layers
    if engine == "megatron":
        layers = split(L, pp)
        if L % pp:
            ok_pp = ", ".join(map(str, divisors_upto(L, 64)))
            reasons.append(
                _rule(
                    f"num_layers ({L}) is not divisible by pp ({pp})",
                    "Megatron-LM: arguments.py:985-998",
                    f"pp in {ok_pp}, or give an uneven split with --decoder-first-pipeline-num-layers",
                )
            )
    else:
        layers = pp_split(L, pp)
        reasons += _architecture_reasons(engine, model.architecture, pp)
    if pp > L:
        reasons.append(_rule(f"pp ({pp}) exceeds num_layers ({L}); a stage would hold no layers"))
    return Verdict(
        ok=not reasons,
        reasons=reasons,
        heads_per_rank=split(model.num_attention_heads, tp // dp),
        kv_heads_per_rank=_kv_per_rank(model, tp // dp),
        layers_per_stage=layers,
    )
