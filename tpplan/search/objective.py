"""What a trial is worth: the objective (output tokens per USD) and the constraints, in numbers.

The façade evaluates a configuration with the candidates stage (engine rules, memory, placement) and
the cost model (or a measurement); this module turns that into what Optuna sees. Every constraint is
a number, feasible at <= 0, and when violated it says by what fraction, so the sampler can tell a
layout that misses the TPOT SLO by 2% from one that misses it by 3x:

    budget     1 for a draw that names no configuration within the GPU budget (the space's own
               sampler never makes one; see space.decode)
    engine     1 when the engine's rules refuse the layout
    placement  1 when the instances cannot be placed on the budget's nodes
    memory     weights + activations over the memory budget (fraction over), or the KV cache short of
               one max_model_len sequence (fraction short)
    kv_cache   max_num_seqs over the requests of I+O tokens one replica's KV cache holds (fraction over)
    slo_tpot   TPOT over the SLO (fraction over; negative: the margin)
    slo_ttft   TTFT over the SLO
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..records import Candidate, Provenance, Reason, ScoredConfig, ServeEstimate
from .rank import near_duplicates_dropped, rank_key
from .space import Config

CONSTRAINTS = ("budget", "engine", "placement", "memory", "kv_cache", "slo_tpot", "slo_ttft")


@dataclass(frozen=True)
class Question:
    """What the study answers; two workers on one study must ask the same question."""

    model: str
    engine: str
    input_tokens: int
    output_tokens: int
    concurrency: int | None
    slo_ttft_ms: float | None
    slo_tpot_ms: float | None
    max_model_len: int
    pareto: bool
    disaggregated: bool = True  # also weigh disaggregated prefill/decode deployments (search/split.py)

    @property
    def sequence_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class Evaluation:
    """A configuration as the stages see it (from the façade)."""

    candidate: Candidate  # candidates.judge: engine rules, memory fit, placement
    estimate: ServeEstimate  # cost model, or measured TTFT/TPOT where a measurement matched
    measured: str | None = None  # the measurement's source when one matched


Evaluate = Callable[[Config], Evaluation]


def _memory(c: Candidate) -> float:
    need = c.weights_gib_per_gpu + c.activation_gib_per_gpu
    if need > c.memory_budget_gib_per_gpu:
        return need / c.memory_budget_gib_per_gpu - 1
    if c.kv_cache_tokens < c.max_model_len:
        return 1 - c.kv_cache_tokens / c.max_model_len
    return 0.0


def constraints(config: Config, ev: Evaluation, *, q: Question) -> tuple[dict[str, float], list[Reason]]:
    """Each constraint's value and, for those violated, the reason in numbers."""
    c, e = ev.candidate, ev.estimate
    values = dict.fromkeys(CONSTRAINTS, 0.0)
    engine = [r for r in c.reasons if r.kind == "engine"]
    memory_reasons = [r for r in c.reasons if r.kind in ("memory", "context")]
    placement = [r for r in c.reasons if r.kind == "placement"]
    reasons = engine[:1]  # the first rule broken; views show it without its citation (Reason.uncited)
    if not c.engine_ok:
        values["engine"] = 1.0
    memory = _memory(c)
    if memory > 0:
        values["memory"] = memory
        reasons += memory_reasons[:1] or [Reason(kind="memory", text="does not fit in memory")]
    if placement:
        values["placement"] = 1.0
        reasons.append(placement[0])
    held = c.kv_cache_tokens // q.sequence_tokens
    if memory <= 0 and config.max_num_seqs > held:
        values["kv_cache"] = config.max_num_seqs / max(held, 1) - 1
        text = (
            f"max_num_seqs {config.max_num_seqs} is more than the {held} requests of {q.sequence_tokens:,} tokens "
            f"one replica's KV cache holds ({c.kv_cache_tokens:,} tokens)"
        )
        reasons.append(Reason(kind="batch", text=text))
    for name, slo, got, what in (
        ("slo_tpot", q.slo_tpot_ms, e.tpot_ms, "TPOT"),
        ("slo_ttft", q.slo_ttft_ms, e.ttft_ms, "TTFT"),
    ):
        if slo is not None:
            values[name] = got / slo - 1
            if got > slo:
                text = f"{what} {got:,.1f} ms is over the {slo:g} ms SLO ({got / slo:.2f}x)"
                reasons.append(Reason(kind="slo", text=text))
    return values, reasons


def basis(ev: Evaluation) -> str:
    """measured when TTFT/TPOT were measured at this configuration; fitted when any cost-model input
    was fitted to measurements; profile otherwise (published, derived or assumed numbers)."""
    if ev.measured:
        return "measured"
    fitted = any(p.basis == "fitted" for p in ev.estimate.provenance.values())
    return "fitted" if fitted else "profile"


def score(config: Config, ev: Evaluation, *, q: Question, trial: int | None = None) -> ScoredConfig:
    values, reasons = constraints(config, ev, q=q)
    e = ev.estimate
    return ScoredConfig(
        profile=config.profile,
        tp=config.tp,
        pp=config.pp,
        replicas=config.replicas,
        ep=config.ep,
        dp_attention=config.dp_attention,
        gpus=config.gpus,
        concurrency=e.concurrency,
        max_num_seqs=config.max_num_seqs,
        dtype=config.dtype,
        kv_cache_dtype=config.kv_cache_dtype,
        output_tokens_per_s=float(e.output_tokens_per_s),
        output_tokens_per_usd=float(e.output_tokens_per_usd),
        ttft_ms=float(e.ttft_ms),
        tpot_ms=float(e.tpot_ms),
        output_tokens_per_usd_low=float(e.output_tokens_per_usd_low),
        output_tokens_per_usd_high=float(e.output_tokens_per_usd_high),
        ttft_ms_low=float(e.ttft_ms_low),
        ttft_ms_high=float(e.ttft_ms_high),
        tpot_ms_low=float(e.tpot_ms_low),
        tpot_ms_high=float(e.tpot_ms_high),
        feasible=all(v <= 0 for v in values.values()),
        violations={k: round(float(v), 6) for k, v in values.items()},
        reasons=reasons,
        basis=basis(ev),  # type: ignore[arg-type]
        trial=trial,
    )


def config_of(s: ScoredConfig) -> Config:
    """The configuration a result was scored for."""
    return Config(
        s.profile, s.tp, s.pp, s.replicas, s.max_num_seqs, s.dtype, s.kv_cache_dtype, s.ep, s.dp_attention
    )


def objective_values(s: ScoredConfig, pareto: bool) -> tuple[float, ...]:
    """Single objective: output tokens per USD (maximize). Pareto: also TPOT and TTFT (minimize)."""
    return (s.output_tokens_per_usd, s.tpot_ms, s.ttft_ms) if pareto else (s.output_tokens_per_usd,)


def better(a: ScoredConfig, b: ScoredConfig) -> bool:
    """The study's running best (tokens/USD, then tokens/s: a bigger deployment of equal efficiency
    serves more, then TPOT); the final choice weighs the intervals too (search/rank.py)."""
    return rank_key(a) < rank_key(b)


def pareto_front(results: list[ScoredConfig]) -> list[ScoredConfig]:
    """Feasible results that no other beats on tokens/USD, TPOT and TTFT at once, without near-duplicates
    (search/rank.py); best tokens/USD first."""
    feasible = [r for r in results if r.feasible]

    def dominates(a: ScoredConfig, b: ScoredConfig) -> bool:
        ge = (
            a.output_tokens_per_usd >= b.output_tokens_per_usd
            and a.tpot_ms <= b.tpot_ms
            and a.ttft_ms <= b.ttft_ms
        )
        gt = (
            a.output_tokens_per_usd > b.output_tokens_per_usd
            or a.tpot_ms < b.tpot_ms
            or a.ttft_ms < b.ttft_ms
        )
        return ge and gt

    front = [r for r in feasible if not any(dominates(o, r) for o in feasible)]
    return near_duplicates_dropped(front)


def basis_line(prov: dict[str, Provenance]) -> str:
    """Which inputs of an estimate were measured, fitted, published or assumed, in one line (details:
    the plan's provenance); the per-input reading of what `basis` sums up as one word."""
    if "measured" in prov:
        return f"measured: {prov['measured'].value}"
    rest = {
        k: v
        for k, v in prov.items()
        if k not in ("kv_cache_tokens", "engine_limits", "kv_transfer", "uncertainty")
    }
    fitted = [k for k, v in rest.items() if v.basis == "fitted"]
    assumed = [k for k, v in rest.items() if v.basis == "assumed"]
    measured = [k for k, v in rest.items() if v.basis in ("measured", "derived")]  # kernel tables
    typed = [k for k, v in rest.items() if v.basis == "given"]  # --price-usd-per-gpu-hour
    given = [k for k in rest if k not in fitted and k not in assumed and k not in measured and k not in typed]
    head = (
        f"cost model fitted to measurements ({', '.join(fitted)})" if fitted else "cost model, nothing fitted"
    )
    parts = [head]
    if measured:
        parts.append(f"measured kernel tables: {', '.join(measured)}")
    if given:
        parts.append(f"published in the profile: {', '.join(given)}")
    if typed:
        parts.append(f"given on the command line: {', '.join(typed)}")
    if assumed:  # an assumed prior is neither measured nor published: name it so nobody takes it for either
        parts.append(f"assumed: {', '.join(assumed)}")
    return "; ".join(parts) + " (plan.yaml: provenance)"
