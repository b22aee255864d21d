"""The search space: every serving configuration `tpplan search` may choose, and how a trial samples one.

A configuration is a GPU type (profile), an instance layout (TP × PP), a replica count, the sequences
each replica runs at once (`max_num_seqs`), and the weight / KV-cache dtypes. The space is built so
that every sample is a real configuration within the GPU budget and each distinct configuration is
counted once (`size`):

- TP takes the values the engine accepts for the model (engines.accepted_tp), up to the budget;
- PP takes powers of two (nodes hold 4 or 8 GPUs, so other stage counts idle GPUs in a node) up to
  the layers and what the budget leaves after TP;
- `max_num_seqs` takes powers of two from 1 to 2**SEQS_MAX_LOG2; memory bounds it per layout (a
  constraint, not a range, so the sampler learns where the KV cache runs out);
- replicas: with a client load C (`--concurrency`), 1 to what the budget leaves; the C clients are
  split evenly, and `max_num_seqs` above a replica's share ⌈C/R⌉ admits the same requests as the share
  itself, so it is that configuration (the powers of two up to the share, and the share). Without C the
  deployment is sized to the budget (replicas = budget // (TP·PP)) and runs full: each replica holds
  `max_num_seqs` requests, C = R·seqs.
  Tokens per USD do not depend on R then (each replica is the same machine at the same load), so the
  budget decides R and the search looks for the concurrency per replica that meets the SLOs best.
- dtypes: the pairs (weights, KV cache) asked for that the GPU runs (fp8 needs FP8 tensor cores);
- MoE models only: the expert / attention layout of an instance (`moe_index`): plain TP, experts
  split over the tp GPUs (EP), DP attention over them with or without EP, as far as the engine
  accepts them (moe_rules.modes). A dense model's space has no such dimension.

A trial draws integers with fixed ranges (tp_index, pp_log2, replicas on a log scale, seqs_log2,
dtype_index), so a sampler models them jointly and neighbouring values are neighbouring configurations;
a draw outside a profile's budget names no configuration (`decode`), and the search's sampler
(sampler.py) only makes draws that name one not yet taken.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from ..specs import compute_dtype, resolve_kv_dtype

SEQS_MAX_LOG2 = 10  # max_num_seqs up to 1024, vLLM's default cap on 80 GiB+ GPUs (get_batch_defaults)
SEQS = tuple(2**k for k in range(SEQS_MAX_LOG2 + 1))
LOG_DIMS = ("replicas",)  # the other integers are already indices of doubling values


class TrialLike(Protocol):
    """What the space needs from an Optuna trial (kept structural: this module does not import optuna)."""

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...


@dataclass(frozen=True)
class Config:
    """One serving configuration: `replicas` instances of tp × pp GPUs of `profile`."""

    profile: str
    tp: int
    pp: int
    replicas: int
    max_num_seqs: int  # per replica
    dtype: str  # weights
    kv_cache_dtype: str
    ep: int = 1  # expert-parallel ranks among the tp GPUs (records.Layout.ep)
    dp_attention: int = 1  # DP-attention groups (records.Layout.dp_attention)

    @property
    def world_size(self) -> int:
        return self.tp * self.pp

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.replicas

    @property
    def key(self) -> str:
        return (
            f"{self.profile}|tp{self.tp}|pp{self.pp}|r{self.replicas}|seqs{self.max_num_seqs}"
            f"|{self.dtype}/{self.kv_cache_dtype}{self.moe_key}"
        )

    @property
    def moe_key(self) -> str:
        """Empty for plain TP, so a dense model's keys are what they always were."""
        return "" if (self.ep, self.dp_attention) == (1, 1) else f"|ep{self.ep}|dpa{self.dp_attention}"

    def label(self) -> str:
        kv = "" if self.kv_cache_dtype == self.dtype else f" (KV {self.kv_cache_dtype})"
        ep = f" EP={self.ep}" if self.ep > 1 else ""
        dpa = f" DPA={self.dp_attention}" if self.dp_attention > 1 else ""
        return (
            f"TP={self.tp}{ep}{dpa} PP={self.pp} x{self.replicas} ({self.gpus} GPUs) seqs {self.max_num_seqs} "
            f"{self.dtype}{kv}"
        )


@dataclass(frozen=True)
class Arm:
    """One GPU type's part of the space."""

    profile: str
    budget_gpus: int
    tps: tuple[int, ...]  # engine-accepted TP degrees within the budget
    max_pp: int  # layers, and the budget after TP=1
    dtypes: tuple[tuple[str, str], ...]  # (weights, kv) pairs this GPU runs
    modes: tuple[tuple[tuple[int, int], ...], ...] = ()  # per TP degree: (ep, dp_attention) pairs; () plain

    def modes_at(self, ti: int) -> tuple[tuple[int, int], ...]:
        return self.modes[ti] if self.modes else ((1, 1),)


@dataclass(frozen=True)
class Space:
    arms: tuple[Arm, ...]
    concurrency: int | None  # client load across the deployment; None: each replica runs full
    seqs: tuple[int, ...] = SEQS

    def arm(self, profile: str) -> Arm:
        return next(a for a in self.arms if a.profile == profile)

    def pps(self, arm: Arm, tp: int) -> list[int]:
        limit = min(arm.max_pp, arm.budget_gpus // tp)
        return [2**k for k in range(int(math.log2(limit)) + 1)] if limit >= 1 else []

    def replicas(self, arm: Arm, tp: int, pp: int) -> list[int]:
        most = arm.budget_gpus // (tp * pp)
        return list(range(1, most + 1)) if self.concurrency else [most]

    def share(self, replicas: int) -> int | None:
        """Clients per replica, rounded up (None without a client load)."""
        return math.ceil(self.concurrency / replicas) if self.concurrency else None

    def seqs_at(self, k: int, replicas: int) -> int:
        """max_num_seqs of index k: 2**k, or a replica's share of the clients when that is less (a cap
        above the share admits the same requests as the share: one configuration, counted once)."""
        share = self.share(replicas)
        return self.seqs[k] if share is None else min(self.seqs[k], share)

    # ---- the sampled indices: fixed ranges, so a sampler models them jointly ----------------------
    @cached_property
    def dims(self) -> dict[str, tuple[int, int]]:
        """Each integer parameter's range; a draw outside one profile's part (a PP or replica count
        over its budget) is no configuration."""
        most_pp = max(len(self.pps(a, 1)) for a in self.arms)
        dims = {
            "tp_index": (0, max(len(a.tps) for a in self.arms) - 1),
            "pp_log2": (0, most_pp - 1),
            "seqs_log2": (0, len(self.seqs) - 1),
            "dtype_index": (0, max(len(a.dtypes) for a in self.arms) - 1),
        }
        if self.concurrency:
            dims["replicas"] = (1, max(a.budget_gpus for a in self.arms))  # sampled on a log scale (LOG_DIMS)
        most_modes = max(len(a.modes_at(i)) for a in self.arms for i in range(len(a.tps)))
        if most_modes > 1:  # MoE models only: a dense model's space is what it was
            dims["moe_index"] = (0, most_modes - 1)
        return dims

    @property
    def profiles(self) -> list[str]:
        return [a.profile for a in self.arms]

    def decode(self, params: dict[str, Any]) -> tuple[Config | None, str]:
        """The configuration a draw names, or None and why not."""
        arm = self.arm(params["profile"])
        ti, di = params["tp_index"], params["dtype_index"]
        if ti >= len(arm.tps) or di >= len(arm.dtypes):
            return None, f"{arm.profile} has {len(arm.tps)} TP degrees and {len(arm.dtypes)} dtype pairs"
        tp, pp = arm.tps[ti], 2 ** params["pp_log2"]
        r = params["replicas"] if self.concurrency else arm.budget_gpus // (tp * pp)
        if r < 1 or pp not in self.pps(arm, tp) or tp * pp * r > arm.budget_gpus:
            return (
                None,
                f"TP={tp} PP={pp} x{max(r, 1)} needs {tp * pp * max(r, 1)} GPUs; the budget is {arm.budget_gpus}",
            )
        dtype, kv = arm.dtypes[di]
        modes, mi = arm.modes_at(ti), params.get("moe_index", 0)
        if mi >= len(modes):
            return None, f"TP={tp} has {len(modes)} expert/attention layouts for this engine"
        seqs = self.seqs_at(params["seqs_log2"], r)
        return Config(arm.profile, tp, pp, r, seqs, dtype, kv, *modes[mi]), ""

    def draws(self) -> Iterator[tuple[dict[str, Any], Config]]:
        """Every valid draw with its configuration (several draws may name one configuration)."""
        for arm in self.arms:
            for ti, tp in enumerate(arm.tps):
                for pp in self.pps(arm, tp):
                    for r in self.replicas(arm, tp, pp):
                        for k in range(len(self.seqs)):
                            for di, (dtype, kv) in enumerate(arm.dtypes):
                                for mi, mode in enumerate(arm.modes_at(ti)):
                                    params = {
                                        "profile": arm.profile,
                                        "tp_index": ti,
                                        "pp_log2": int(math.log2(pp)),
                                        "seqs_log2": k,
                                        "dtype_index": di,
                                    }
                                    if self.concurrency:
                                        params["replicas"] = r
                                    if "moe_index" in self.dims:
                                        params["moe_index"] = mi
                                    seqs = self.seqs_at(k, r)
                                    yield params, Config(arm.profile, tp, pp, r, seqs, dtype, kv, *mode)

    def configs(self) -> Iterator[Config]:
        """Every distinct configuration, once."""
        seen: set[str] = set()
        for _, c in self.draws():
            if c.key not in seen:
                seen.add(c.key)
                yield c

    @cached_property
    def size(self) -> int:
        return sum(1 for _ in self.configs())

    def suggest(self, trial: TrialLike) -> tuple[Config | None, str]:
        """Draw one configuration through the trial (every parameter, every time: fixed ranges)."""
        params: dict[str, Any] = {"profile": trial.suggest_categorical("profile", self.profiles)}
        for name, (low, high) in self.dims.items():
            params[name] = trial.suggest_int(name, low, high, log=name in LOG_DIMS)
        return self.decode(params)


def dtype_pairs(
    dtypes: list[str], kv_dtypes: list[str], supports_fp8: bool, engine: str, activation_dtype: str = "bf16"
) -> tuple[tuple[str, str], ...]:
    """(weights, KV cache) pairs to search on one GPU, the KV dtype explicit: fp8 only with FP8 tensor
    cores. "auto" is the compute dtype as in the engines (specs.resolve_kv_dtype: fp8 weights keep the
    checkpoint's `activation_dtype` cache); Megatron-LM has no flag for any other cache
    (emit/megatron.py refuses it)."""
    out: list[tuple[str, str]] = []
    for w in dtypes:
        activation = compute_dtype(w, activation_dtype)
        for kv in kv_dtypes:
            kv = resolve_kv_dtype(kv, w, activation_dtype)
            if "fp8" in (w, kv) and not supports_fp8:
                continue
            if engine == "megatron" and kv != activation:
                continue
            if (w, kv) not in out:
                out.append((w, kv))
    return tuple(out)
