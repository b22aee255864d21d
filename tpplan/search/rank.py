"""Which feasible configuration wins, and what the output says when the estimates cannot tell.

The objective is output tokens per USD, but every estimate carries an 80% interval (costmodel/spread.py:
measured ÷ predicted percentiles over held-apart points, i.e. how the error varies from one
configuration to the next). So:

- the top is the configuration with the most tokens/USD (then tokens/s, then lower TPOT);
- each instance layout competes at its best replica count and max_num_seqs (by tokens/USD);
- every such layout whose tokens/USD lies inside the top's interval is tied with it, and a
  tie is broken by latency — lower TTFT, then lower TPOT — then by fewer GPUs (then the order above,
  then the configuration's key, so the choice is deterministic);
- the decision names the best runner-up of another GPU type, TP, PP or dtype (more replicas or another
  max_num_seqs of the same instance is not a distinct plan) and says whether the margin is inside the
  uncertainty.

The default TTFT limit: without one the search happily trades a 9.8 s TTFT for 0.08% more tokens/USD.
2000 ms is what AIConfigurator, the simulator peer, filters at by default (ai-dynamo/aiconfigurator,
src/aiconfigurator/cli/main.py: `--ttft` default 2000.0, "Configurations exceeding this value are
filtered from the pareto and topN configs"); `--slo-ttft-ms none` lifts it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..records import Decision, ScoredConfig

DEFAULT_SLO_TTFT_MS = 2000.0


def rank_key(r: ScoredConfig) -> tuple[float, float, float]:
    """Most tokens/USD first; on a tie, more tokens/s, then lower TPOT."""
    return (-r.output_tokens_per_usd, -r.output_tokens_per_s, r.tpot_ms)


def instance_key(r: ScoredConfig) -> tuple:
    """What makes a runner-up a distinct plan: another GPU type, TP, PP, expert/attention layout, dtype
    or prefill side (more replicas of the same instance, or another max_num_seqs, is the same plan
    scaled or loaded differently)."""
    p = r.disaggregated.prefill if r.disaggregated else None
    side = (p.tp, p.pp, p.ep, p.dp_attention) if p else ()
    return (r.profile, r.tp, r.pp, r.ep, r.dp_attention, r.dtype, r.kv_cache_dtype, r.kind, *side)


def _key(r: ScoredConfig) -> tuple:
    p = r.disaggregated.prefill if r.disaggregated else None
    return (*instance_key(r), r.replicas, r.max_num_seqs, p.replicas if p else 0)


def within(a: ScoredConfig, b: ScoredConfig) -> bool:
    """The lower tokens/USD of the two lies inside the higher one's interval: the estimates cannot
    tell them apart."""
    hi, lo = (a, b) if rank_key(a) <= rank_key(b) else (b, a)
    return lo.output_tokens_per_usd >= hi.output_tokens_per_usd_low


def tie_key(r: ScoredConfig) -> tuple:
    """Among ties: lower TTFT, then lower TPOT, then fewer GPUs; then the usual order."""
    return (r.ttft_ms, r.tpot_ms, r.gpus, *rank_key(r), _key(r))


def distinct(results: Iterable[ScoredConfig]) -> list[ScoredConfig]:
    """One result per configuration (the first seen)."""
    seen: dict[tuple, ScoredConfig] = {}
    for r in results:
        seen.setdefault(_key(r), r)
    return list(seen.values())


def _winner(pool: Sequence[ScoredConfig]) -> ScoredConfig:
    top = min(pool, key=lambda r: (*rank_key(r), _key(r)))
    return min((r for r in pool if within(top, r)), key=tie_key)


def instance_bests(results: Iterable[ScoredConfig]) -> list[ScoredConfig]:
    """Each instance layout at its best count and max_num_seqs by tokens/USD: the uncertainty is
    between layouts (how well the model transfers to them), so within one layout the integers the
    solver chose stand, and a tie never trades a layout's best batch for a smaller one."""
    best: dict[tuple, ScoredConfig] = {}

    def order(r: ScoredConfig) -> tuple:  # an exact tie in tokens/USD (replicas without a client load
        return (-r.output_tokens_per_usd, *tie_key(r))  # scale it alike) goes to latency, fewer GPUs

    for r in distinct(results):
        k = instance_key(r)
        if k not in best or order(r) < order(best[k]):
            best[k] = r
    return list(best.values())


def choose(feasible: Sequence[ScoredConfig]) -> tuple[ScoredConfig, Decision]:
    """The winner among feasible results, and how it was decided: the best of each instance layout,
    then ties between layouts broken by latency, then fewer GPUs."""
    pool = instance_bests(feasible)
    winner = _winner(pool)
    return winner, decide(winner, pool)


def pick(winners: dict[str, ScoredConfig]) -> str:
    """Which of several searches' winners (by engine) wins, by the same rule: its key."""
    best = _winner(list(winners.values()))
    return next(k for k, r in winners.items() if r is best)


def decide(winner: ScoredConfig, pool: Sequence[ScoredConfig]) -> Decision:
    """The winner against the best runner-up of another instance layout or dtype, in one sentence."""
    others = [r for r in pool if instance_key(r) != instance_key(winner)]
    if not others:
        return Decision(
            runner_up=None,
            tokens_per_usd_ratio=None,
            within_uncertainty=False,
            decided_by="only layout",
            text="no other feasible layout was found to compare the winner with",
        )
    runner = min(others, key=lambda r: (*rank_key(r), _key(r)))
    ratio = winner.output_tokens_per_usd / runner.output_tokens_per_usd
    close = within(winner, runner)
    named = f"{runner.profile} {runner.label()} ({runner.output_tokens_per_usd:,.0f} tokens/USD, TTFT {runner.ttft_ms:,.0f} ms, TPOT {runner.tpot_ms:.1f} ms)"
    band = _band(winner if rank_key(winner) <= rank_key(runner) else runner)
    if not close:
        text = f"wins by {ratio:.3f}x tokens/USD over the best other layout, {named}: beyond the estimates' {band}"
        by = "tokens/USD"
    elif rank_key(winner) <= rank_key(runner):
        by = "tokens/USD"
        text = (
            f"a close call: the runner-up {named} is within the estimates' {band} "
            f"({ratio:.3f}x); the model cannot tell them apart, measure both (tpplan bench)"
        )
    else:
        by = _broken_by(winner, runner)
        text = (
            f"a close call: {named} earns {1 / ratio:.3f}x the winner's tokens/USD, within the estimates' "
            f"{band}; the winner is chosen for its {_lower(winner, runner, by)}; measure both (tpplan bench)"
        )
    return Decision(
        runner_up=runner,
        tokens_per_usd_ratio=round(ratio, 4),
        within_uncertainty=close,
        decided_by=by,  # type: ignore[arg-type]
        text=text,
    )


def band(r: ScoredConfig) -> str:
    """The tokens/USD interval of r around its value, as -x%/+y% ("-" for no value)."""
    v = r.output_tokens_per_usd
    if not v:
        return "-"
    lo, hi = 100 * (1 - r.output_tokens_per_usd_low / v), 100 * (r.output_tokens_per_usd_high / v - 1)
    return f"-{lo:.0f}%/+{hi:.0f}%"


def _band(r: ScoredConfig) -> str:
    return f"{band(r)} tokens/USD uncertainty"


def _broken_by(a: ScoredConfig, b: ScoredConfig) -> str:
    if a.ttft_ms != b.ttft_ms:
        return "TTFT"
    if a.tpot_ms != b.tpot_ms:
        return "TPOT"
    return "GPUs" if a.gpus != b.gpus else "tokens/USD"


def tie_reason(winner: ScoredConfig, other: ScoredConfig) -> str:
    """What `winner` beat a tied `other` on, in words: "lower TTFT (864 vs 922 ms)"."""
    return _lower(winner, other, _broken_by(winner, other))


def _lower(a: ScoredConfig, b: ScoredConfig, by: str) -> str:
    if by == "TTFT":
        return f"lower TTFT ({a.ttft_ms:,.0f} vs {b.ttft_ms:,.0f} ms)"
    if by == "TPOT":
        return f"lower TPOT ({a.tpot_ms:.1f} vs {b.tpot_ms:.1f} ms)"
    if by == "GPUs":
        return f"fewer GPUs ({a.gpus} vs {b.gpus})"
    return "place in the deterministic order (equal TTFT, TPOT and GPUs)"


def near_duplicates_dropped(front: Sequence[ScoredConfig]) -> list[ScoredConfig]:
    """A Pareto front without near-duplicates: a point is dropped when a point already kept (best
    tokens/USD first) of the same instance is, within the dropped one's intervals, no worse on
    tokens/USD, TPOT and TTFT (the same layout at a neighbouring max_num_seqs; more replicas of it)."""
    kept: list[ScoredConfig] = []
    for p in sorted(front, key=lambda r: (*rank_key(r), _key(r))):
        if not any(instance_key(k) == instance_key(p) and _covers(k, p) for k in kept):
            kept.append(p)
    return kept


def _covers(k: ScoredConfig, p: ScoredConfig) -> bool:
    return (
        k.output_tokens_per_usd >= p.output_tokens_per_usd_low
        and k.tpot_ms <= p.tpot_ms_high
        and k.ttft_ms <= p.ttft_ms_high
    )


def leaders(best: ScoredConfig, results: Sequence[ScoredConfig], *, n: int = 5) -> list[ScoredConfig]:
    """The winner, then the other feasible configurations by tokens/USD: the top-n table."""
    rest = sorted((r for r in distinct(results) if r.feasible and _key(r) != _key(best)), key=rank_key)
    return [best, *rest[: n - 1]]


def best_per(
    results: Sequence[ScoredConfig], field: str, *, winner: ScoredConfig | None = None
) -> list[ScoredConfig]:
    """The winner among the feasible results of each value of `field` (profile: per GPU type), best
    first; empty when there is only one value. The overall `winner` stands for its own value and comes
    first (a tie is judged against the top of the pool it is in, so a group's own choice can differ)."""
    groups: dict[str, list[ScoredConfig]] = {}
    for r in results:
        if r.feasible:
            groups.setdefault(getattr(r, field), []).append(r)
    if len(groups) < 2:
        return []
    own = getattr(winner, field) if winner is not None else None
    rest = sorted((choose(g)[0] for v, g in groups.items() if v != own), key=rank_key)
    return [winner, *rest] if winner is not None and own in groups else rest
