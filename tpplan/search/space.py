"""The search space: every serving configuration `tpplan search` may choose, and how a trial samples one.

A configuration is a GPU type (profile), an instance layout (TP × PP), a replica count, the sequences
each replica runs at once (`max_num_seqs`), and the weight / KV-cache dtypes. Everything but
`max_num_seqs` is a `Setup`: the Optuna study samples setups, and each setup's best integer
`max_num_seqs` is solved exactly (search/batch.py) rather than sampled. The space is built so that
every sample is a real setup within the GPU budget and each distinct setup is counted once (`size`):

- TP takes the values the engine accepts for the model (engines.accepted_tp), up to the budget;
- PP takes powers of two (nodes hold 4 or 8 GPUs, so other stage counts idle GPUs in a node) up to
  the layers and what the budget leaves after TP;
- `max_num_seqs` takes every integer from 1 to what one replica's KV cache holds (requests of ISL+OSL
  tokens; at most MAX_SEQS), and with a client load at most a replica's share ⌈C/R⌉ (a cap above the
  share admits the same requests as the share itself): `seqs_upper`;
- replicas: with a client load C (`--concurrency`), 1 to what the budget leaves; the C clients are
  split evenly. Without C the
  deployment is sized to the budget (replicas = budget // (TP·PP)) and runs full: each replica holds
  `max_num_seqs` requests, C = R·seqs.
  Tokens per USD do not depend on R then (each replica is the same machine at the same load), so the
  budget decides R and the search looks for the concurrency per replica that meets the SLOs best.
- dtypes: the pairs (weights, KV cache) asked for that the GPU runs (fp8 needs FP8 tensor cores);
- MoE models only: the expert / attention layout of an instance (`moe_index`): plain TP, experts
  split over the tp GPUs (EP), DP attention over them with or without EP, as far as the engine
  accepts them (moe_rules.modes). A dense model's space has no such dimension.

A trial draws integers with fixed ranges (tp_index, pp_log2, replicas on a log scale, dtype_index), so a sampler models them jointly and neighbouring values are neighbouring configurations;
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

# Assumed bound of the search, not an engine limit (vLLM takes any max_num_seqs): a 7B+ model's KV cache
# holds fewer requests of 1k+ tokens per instance than this, so the cache is what binds.
MAX_SEQS = 4096
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
    def setup(self) -> Setup:
        return Setup(
            self.profile,
            self.tp,
            self.pp,
            self.replicas,
            self.dtype,
            self.kv_cache_dtype,
            self.ep,
            self.dp_attention,
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
class Setup:
    """A configuration but its max_num_seqs: what one trial of the study samples."""

    profile: str
    tp: int
    pp: int
    replicas: int
    dtype: str
    kv_cache_dtype: str
    ep: int = 1  # as Config
    dp_attention: int = 1

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.replicas

    @property
    def key(self) -> str:
        return self.at(0).key.replace("|seqs0", "")

    def at(self, max_num_seqs: int) -> Config:
        return Config(
            self.profile,
            self.tp,
            self.pp,
            self.replicas,
            max_num_seqs,
            self.dtype,
            self.kv_cache_dtype,
            self.ep,
            self.dp_attention,
        )

    def label(self) -> str:
        return self.at(0).label().replace(" seqs 0", "")


@dataclass(frozen=True)
class Arm:
    """One GPU type's part of the space."""

    profile: str
    budget_gpus: int
    tps: tuple[int, ...]  # engine-accepted TP degrees within the budget
    max_pp: int  # layers, and the budget after TP=1
    dtypes: tuple[tuple[str, str], ...]  # (weights, kv) pairs this GPU runs
    modes: tuple[tuple[tuple[int, int], ...], ...] = ()  # per TP degree: (ep, dp_attention) pairs; () plain
    pp_pins: tuple[int, ...] = ()  # `--pp`: only these depths; () any
    tp_pins: tuple[int, ...] = ()  # `--tp`: only these degrees; () any

    def allows(self, tp: int, pp: int) -> bool:
        """Within the user's --tp/--pp pins (the winner's neighbours may lie outside the space)."""
        return (not self.tp_pins or tp in self.tp_pins) and (not self.pp_pins or pp in self.pp_pins)

    def modes_at(self, ti: int) -> tuple[tuple[int, int], ...]:
        return self.modes[ti] if self.modes else ((1, 1),)


def pp_depths(max_pp: int, budget_gpus: int, tp: int) -> list[int]:
    """The PP depths a TP degree can take: doublings (nodes hold 4 or 8 GPUs) up to `max_pp` (the
    layers) and what the budget leaves after TP."""
    limit = min(max_pp, budget_gpus // tp)
    return [2**k for k in range(int(math.log2(limit)) + 1)] if limit >= 1 else []


@dataclass(frozen=True)
class Space:
    arms: tuple[Arm, ...]
    concurrency: int | None  # client load across the deployment; None: each replica runs full

    def arm(self, profile: str) -> Arm:
        return next(a for a in self.arms if a.profile == profile)

    def pps(self, arm: Arm, tp: int) -> list[int]:
        found = pp_depths(arm.max_pp, arm.budget_gpus, tp)
        return [p for p in found if not arm.pp_pins or p in arm.pp_pins]

    def replicas(self, arm: Arm, tp: int, *, pp: int) -> list[int]:
        most = arm.budget_gpus // (tp * pp)
        return list(range(1, most + 1)) if self.concurrency else [most]

    def share(self, replicas: int) -> int | None:
        """Clients per replica, rounded up (None without a client load)."""
        return math.ceil(self.concurrency / replicas) if self.concurrency else None

    def seqs_upper(self, replicas: int, held: int) -> int:
        """The largest max_num_seqs worth trying on a replica whose KV cache holds `held` requests: no
        more than it holds, than MAX_SEQS, or than its share of the clients (at least 1: a setup whose
        cache holds none is still one configuration, infeasible)."""
        share = self.share(replicas)
        return max(1, min(held, MAX_SEQS, share if share is not None else MAX_SEQS))

    # ---- the sampled indices: fixed ranges, so a sampler models them jointly ----------------------
    @cached_property
    def dims(self) -> dict[str, tuple[int, int]]:
        """Each integer parameter's range; a draw outside one profile's part (a PP or replica count
        over its budget) is no configuration."""
        # pp_log2 indexes doubling depths; a --pp pin leaves gaps, so the range is the deepest one's
        most_pp = max(int(math.log2(p)) + 1 for a in self.arms for p in self.pps(a, 1))
        dims = {
            "tp_index": (0, max(len(a.tps) for a in self.arms) - 1),
            "pp_log2": (0, most_pp - 1),
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

    def decode(self, params: dict[str, Any]) -> tuple[Setup | None, str]:
        """The setup a draw names, or None and why not."""
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
        return Setup(arm.profile, tp, pp, r, dtype, kv, *modes[mi]), ""

    def draws(self) -> Iterator[tuple[dict[str, Any], Setup]]:
        """Every valid draw with its setup (one draw per setup)."""
        for arm in self.arms:
            for ti, tp in enumerate(arm.tps):
                for pp in self.pps(arm, tp):
                    for r in self.replicas(arm, tp, pp=pp):
                        for di, (dtype, kv) in enumerate(arm.dtypes):
                            for mi, mode in enumerate(arm.modes_at(ti)):
                                params = {
                                    "profile": arm.profile,
                                    "tp_index": ti,
                                    "pp_log2": int(math.log2(pp)),
                                    "dtype_index": di,
                                }
                                if self.concurrency:
                                    params["replicas"] = r
                                if "moe_index" in self.dims:
                                    params["moe_index"] = mi
                                yield params, Setup(arm.profile, tp, pp, r, dtype, kv, *mode)

    def setups(self) -> Iterator[Setup]:
        """Every distinct setup, once."""
        for _, s in self.draws():
            yield s

    @cached_property
    def size(self) -> int:
        """Distinct setups (each with its own range of max_num_seqs)."""
        return sum(1 for _ in self.setups())

    def suggest(self, trial: TrialLike) -> tuple[Setup | None, str]:
        """Draw one setup through the trial (every parameter, every time: fixed ranges)."""
        params: dict[str, Any] = {"profile": trial.suggest_categorical("profile", self.profiles)}
        for name, (low, high) in self.dims.items():
            params[name] = trial.suggest_int(name, low, high, log=name in LOG_DIMS)
        return self.decode(params)


def dtype_pairs(
    dtypes: list[str],
    kv_dtypes: list[str],
    *,
    supports_fp8: bool,
    engine: str,
    activation_dtype: str = "bf16",
    checkpoint_kv: str | None = None,
) -> tuple[tuple[str, str], ...]:
    """(weights, KV cache) pairs to search on one GPU, the KV dtype explicit: fp8 only with FP8 tensor
    cores. "auto" is the compute dtype as in the engines (specs.resolve_kv_dtype: fp8 weights keep the
    checkpoint's `activation_dtype` cache, or the FP8 cache the checkpoint declares); Megatron-LM has no flag for any other cache
    (emit/megatron.py refuses it)."""
    out: list[tuple[str, str]] = []
    for w in dtypes:
        activation = compute_dtype(w, activation_dtype)
        for kv in kv_dtypes:
            kv = resolve_kv_dtype(kv, w, activation_dtype, checkpoint_kv)
            if "fp8" in (w, kv) and not supports_fp8:
                continue
            if engine == "megatron" and kv != activation:
                continue
            if (w, kv) not in out:
                out.append((w, kv))
    return tuple(out)
