"""A search question made concrete: the space of configurations per profile, the evaluator that
scores one (the candidates stage's verdict, priced by the cost model or answered by a measurement),
and the fingerprint that says which stored study asks the same question.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from .. import candidates as candidates_stage
from .. import costmodel, engines, moe_rules
from ..errors import ConfigError
from ..records import Candidate, Layout
from ..specs import HardwareProfile, ModelSpec, Workload
from . import pins
from .objective import Evaluation, Question
from .space import Arm, Config, Space, dtype_pairs

# Bump when the space, objective or stored record changes meaning (2: typed reasons; 3: MoE models
# search expert parallelism and DP attention; 4: a trial is a setup with its max_num_seqs solved, not a
# sampled configuration; 5: intervals and the TTFT default): no resume across.
SEARCH_VERSION = 5
EVALUATIONS_KEPT = 4096  # recent evaluations kept for asking again (a few kB each)


def evaluator(
    model: ModelSpec,
    profiles: dict[str, HardwareProfile],
    *,
    budgets: dict[str, int],
    q: Question,
    measured: costmodel.Measured,
) -> Callable[[Config], Evaluation]:
    """Config -> Evaluation: the candidates stage's verdict and the cost model's (or a measurement's) numbers."""
    memory_engine = costmodel.known_engine(q.engine)
    verdicts: dict[str, tuple[Layout, Candidate]] = {}  # per setup: max_num_seqs changes neither

    def evaluate(c: Config) -> Evaluation:
        profile, budget = profiles[c.profile], budgets[c.profile]
        clients = q.concurrency or c.replicas * c.max_num_seqs
        workload = Workload(
            input_tokens=q.input_tokens,
            output_tokens=q.output_tokens,
            concurrency=clients,
            dtype=c.dtype,
            kv_cache_dtype=c.kv_cache_dtype,
        )  # type: ignore[arg-type]
        if c.setup.key not in verdicts:
            layout = Layout(tp=c.tp, pp=c.pp, replicas=c.replicas, ep=c.ep, dp_attention=c.dp_attention)
            served = model.model_copy(update={"dtype": c.dtype})
            tp_limit = max(budget, profile.total_gpus)  # as price_layout judges it
            verdicts[c.setup.key] = (
                layout,
                candidates_stage.judge(
                    served,
                    profile,
                    layout=layout,
                    engine=memory_engine,
                    budget_gpus=budget,
                    max_model_len=q.max_model_len,
                    kv_dtype=workload.kv_dtype,
                    tp_limit=tp_limit,
                ),
            )
        layout, verdict = verdicts[c.setup.key]
        est = costmodel.price_layout(
            model,
            profile,
            layout=layout,
            workload=workload,
            engine=q.engine,
            max_num_seqs=c.max_num_seqs,
            budget_gpus=budget,
            max_model_len=q.max_model_len,
            candidate=verdict,
        )
        per_replica = clients / c.replicas
        hit = None
        if (
            c.moe_key == ""
            and c.kv_cache_dtype == c.dtype
            and per_replica == int(per_replica)
            and c.max_num_seqs >= per_replica
        ):
            hit = measured.points.get(
                (c.profile, q.engine, c.dtype, c.tp, c.pp, q.input_tokens, q.output_tokens, int(per_replica))
            )
        if hit:
            return Evaluation(
                verdict, costmodel.with_measured(est, ttft_ms=hit[0], tpot_ms=hit[1], where=hit[2]), hit[2]
            )
        return Evaluation(verdict, est)

    # The neighbours, the climb and the plan ask again for configurations the study evaluated.
    return functools.lru_cache(maxsize=EVALUATIONS_KEPT)(evaluate)


def build_space(
    model: ModelSpec,
    profiles: dict[str, HardwareProfile],
    *,
    budgets: dict[str, int],
    engine: str,
    dtypes: list[str],
    kv_dtypes: list[str],
    concurrency: int | None,
    tp_pins: list[int] | None = None,
    pp_pins: list[int] | None = None,
) -> tuple[Space, list[str]]:
    """One arm per profile that can serve the model: its TP degrees, PP depths and dtype pairs
    (only the pinned TP / PP degrees when `--tp` / `--pp` pin them)."""
    arms, notes = [], []
    possible_tp: set[int] = set()
    possible_pp: set[int] = set()
    pinned = (tuple(pp_pins or ()), tuple(tp_pins or ()))
    for name, p in profiles.items():
        budget = budgets[name]
        accepted = tuple(engines.accepted_tp(engine, model, limit=budget))  # type: ignore[arg-type]
        possible_tp |= set(accepted)
        tps = pins.keep(accepted, tp_pins)
        pps = pins.keep(tuple(sorted(pins.depths(model.num_layers, budget, tps=tps))), pp_pins)
        possible_pp |= pins.depths(model.num_layers, budget, tps=tps)
        tps = tuple(t for t in tps if any(t * d <= budget for d in pps))  # a TP no pinned depth fits
        pairs = dtype_pairs(
            dtypes,
            kv_dtypes,
            supports_fp8=p.gpu.supports_fp8,
            engine=engine,
            activation_dtype=model.activation_dtype,
            checkpoint_kv=model.checkpoint_kv_dtype,
        )
        if not tps:
            notes.append(f"{name}: {engine} accepts no TP degree up to {budget} for {model.name}")
        elif not pairs:
            notes.append(f"{name}: {p.gpu.name} runs none of the dtypes asked for ({', '.join(dtypes)})")
        else:
            modes = tuple(moe_rules.modes(engine, model, tp=t) for t in tps)
            arms.append(Arm(name, budget, tps, min(model.num_layers, budget), pairs, modes, *pinned))
    where = f"for {model.name} with {engine} on {', '.join(profiles)} ({'/'.join(map(str, budgets.values()))} GPUs)"
    pins.check(tp_pins, possible_tp, field="tp", why=where)
    pins.check(
        pp_pins,
        possible_pp,
        field="pp",
        why=where + (f" at TP {','.join(map(str, tp_pins))}" if tp_pins else ""),
    )
    if not arms:
        raise ConfigError(
            "; ".join(notes) + ": nothing to search",
            field="profile",
            expected="a profile whose GPUs run the model's dtype (fp8 needs FP8 tensor cores)",
        )
    return Space(tuple(arms), concurrency), notes


def fingerprint(
    q: Question,
    model: ModelSpec,
    *,
    profiles: dict[str, HardwareProfile],
    budgets: dict[str, int],
    dtypes: list[str],
    kv_dtypes: list[str],
) -> dict:
    """What makes two searches the same study: everything that changes a trial's answer."""

    def digest(obj) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]

    return {
        "version": SEARCH_VERSION,
        "model": model.name,
        "model_spec": digest(model.model_dump(mode="json")),
        "profiles": {n: digest(p.model_dump(mode="json")) for n, p in profiles.items()},
        "budgets": budgets,
        "engine": q.engine,
        "isl": q.input_tokens,
        "osl": q.output_tokens,
        "concurrency": q.concurrency,
        "slo_ttft_ms": q.slo_ttft_ms,
        "slo_tpot_ms": q.slo_tpot_ms,
        "max_model_len": q.max_model_len,
        "dtypes": dtypes,
        "kv_cache_dtypes": kv_dtypes,
        "pareto": q.pareto,
    }


@dataclass
class Prepared:
    """A validated question and everything a study of it needs."""

    model: ModelSpec
    profiles: dict[str, HardwareProfile]
    question: Question
    space: Space
    evaluate: Callable[[Config], Evaluation]
    fingerprint: dict
    notes: list[str]

    @property
    def study_name(self) -> str:
        digest = hashlib.sha256(json.dumps(self.fingerprint, sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.model.name}-{self.question.engine}-{digest}"


def pose(
    q: Question,
    model: ModelSpec,
    *,
    profiles: dict[str, HardwareProfile],
    budgets: dict[str, int],
    measured: costmodel.Measured,
    dtypes: list[str],
    kv_dtypes: list[str],
    notes: list[str],
    tp_pins: list[int] | None = None,
    pp_pins: list[int] | None = None,
) -> Prepared:
    """The space, evaluator and fingerprint of a validated question on loaded records."""
    shape = {"budgets": budgets, "dtypes": dtypes, "kv_dtypes": kv_dtypes}
    space, space_notes = build_space(
        model, profiles, engine=q.engine, concurrency=q.concurrency, tp_pins=tp_pins, pp_pins=pp_pins, **shape
    )
    found = fingerprint(q, model, profiles=profiles, **shape)
    # A pinned search is another study; an unpinned one keeps the name it always had.
    found |= {k: v for k, v in (("tp_pins", tp_pins), ("pp_pins", pp_pins)) if v}
    return Prepared(
        model,
        profiles,
        q,
        space,
        evaluator(model, profiles, budgets=budgets, q=q, measured=measured),
        found,
        notes + space_notes,
    )
