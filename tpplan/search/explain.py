"""Why the winner won: each neighbour one step away (TP*2, TP/2, a replica more or fewer, PP+1; for an
MoE model also plain TP against expert parallelism + DP attention on the same GPUs), what
it scores, and what it lost on, in numbers ("TP=16 crosses the NVLink domain: all-reduce 5.8x slower
(61 us vs 10 us each); 0.61x tokens/USD").

A TP or PP step keeps the GPU count as close as the budget allows (TP*2 halves the replicas), so it
weighs TP against replicas and pipeline stages at a fixed cost; a replica step changes the GPUs.
Each neighbour is judged at its own best max_num_seqs (a PP=2 instance holds more sequences than a
PP=1 one): what it scores at the winner's value is said too when that differs.
"""

from __future__ import annotations

import dataclasses

from ..records import Neighbour, ScoredConfig
from .batch import solve
from .objective import Evaluate, Evaluation, Question, config_of, score
from .rank import tie_key, tie_reason, within
from .space import Config, Space

STEP_PARTS = {
    "compute_ms": "compute",
    "weight_reads_ms": "weight reads",
    "kv_reads_ms": "KV-cache reads",
    "allreduce_ms": "all-reduce",
    "p2p_ms": "pipeline sends",
    "overhead_ms": "per-step overhead",
    "bubble_ms": "pipeline bubble",
}


def _steps(w: Config) -> list[tuple[str, int, int, int | None]]:
    """(change, tp, pp, replicas or None to keep the GPU count) of each neighbour."""
    out = [("TP*2", w.tp * 2, w.pp, None)]
    if w.tp % 2 == 0:
        out.append(("TP/2", w.tp // 2, w.pp, None))
    out.append(("replicas+1", w.tp, w.pp, w.replicas + 1))
    if w.replicas > 1:
        out.append(("replicas-1", w.tp, w.pp, w.replicas - 1))
    out.append(("PP+1", w.tp, w.pp + 1, None))
    return out


def neighbours(
    space: Space,
    winner: ScoredConfig,
    *,
    evaluate: Evaluate,
    q: Question,
    tie_top: ScoredConfig | None = None,
) -> list[Neighbour]:
    """The winner's neighbours, each at its best max_num_seqs, and what it lost on. `tie_top`: the
    configuration with the most tokens/USD when the winner took a tie inside its interval (the tie is
    judged in the top's interval, search/rank.py); None: the winner is the top."""
    w, top = config_of(winner), tie_top or winner
    budget = space.arm(w.profile).budget_gpus
    w_ev = evaluate(w)
    out = []
    for change, tp, pp, replicas in _steps(w):
        world = tp * pp
        most = budget // world
        r = replicas if replicas is not None else max(1, min(most, round(w.gpus / world)))
        if most < 1 or r > most:
            need = world * r
            out.append(
                Neighbour(
                    change=change,
                    config=None,
                    tokens_per_usd_ratio=None,
                    lost_on=f"{change} (TP={tp} PP={pp} x{r}) needs {need} GPUs; the budget is {budget}",
                )
            )
            continue
        # the winner's expert/attention layout carried to the neighbour's TP (EP over all of its GPUs)
        ep, dpa = (tp if w.ep > 1 else 1), (tp if w.dp_attention > 1 else 1)
        seqs = space.seqs_upper(r, w.max_num_seqs)
        c = Config(w.profile, tp, pp, r, seqs, w.dtype, w.kv_cache_dtype, ep, dpa)
        out.append(_judged(change, c, winner, w_ev, space, evaluate, q, tie_top=top))
    # MoE: the other way to run the same GPUs (plain TP against EP + DP attention)
    modes = space.arm(w.profile).modes_at(space.arm(w.profile).tps.index(w.tp))
    other = (1, 1) if (w.ep, w.dp_attention) != (1, 1) else (w.tp, w.tp)
    if other in modes and other != (w.ep, w.dp_attention):  # at TP=1 both ways are one layout
        change = "plain TP" if other == (1, 1) else "EP+DPA"
        alt = dataclasses.replace(w, ep=other[0], dp_attention=other[1])
        out.append(_judged(change, alt, winner, w_ev, space, evaluate, q, tie_top=top))
    return out


def _judged(
    change: str,
    c: Config,
    winner: ScoredConfig,
    w_ev: Evaluation,
    space: Space,
    evaluate: Evaluate,
    q: Question,
    *,
    tie_top: ScoredConfig,
) -> Neighbour:
    """The neighbour at its best max_num_seqs (the winner's when that is feasible and as good)."""
    at_winner = score(c, evaluate(c), q=q)
    best = _best_seqs(space, c, evaluate, q)
    if best is None:
        return Neighbour(
            change=change,
            config=at_winner,
            tokens_per_usd_ratio=None,
            lost_on=f"{change} ({at_winner.label()}): {at_winner.reasons[0].uncited()}; no max_num_seqs makes it feasible",
        )
    s, ev = best
    ratio = s.output_tokens_per_usd / winner.output_tokens_per_usd
    text = f"{change} ({s.label()}): "
    if s.max_num_seqs != at_winner.max_num_seqs:
        why = (
            at_winner.reasons[0].uncited()
            if at_winner.reasons
            else (f"{at_winner.output_tokens_per_usd / winner.output_tokens_per_usd:.2f}x tokens/USD")
        )
        text += f"at max_num_seqs {at_winner.max_num_seqs}, {why}; at its best, {s.max_num_seqs}: "
    text += f"{_cause(ev, w_ev, c)}{ratio:.2f}x tokens/USD"
    if ratio > 1 and within(tie_top, s) and tie_key(winner) <= tie_key(s):  # a tie the winner took
        text += f" - more than the winner, inside the estimates' uncertainty: the tie went to the winner's {tie_reason(winner, s)}"
    elif ratio > 1:
        text += (
            " - better than the winner: the search did not reach it, or it lies outside the searched space"
        )
    return Neighbour(change=change, config=s, tokens_per_usd_ratio=round(ratio, 3), lost_on=text)


def _cause(ev: Evaluation, w_ev: Evaluation, c: Config) -> str:
    """The main difference from the winner, in numbers, ending in '; '."""
    e, we = ev.estimate, w_ev.estimate
    nb, wb = e.breakdown, we.breakdown
    if e.crosses_nvlink_domain and not we.crosses_nvlink_domain and wb.allreduce_us_each:
        slower = nb.allreduce_us_each / wb.allreduce_us_each
        return (
            f"TP={c.tp} crosses the NVLink domain ({e.tp_fabric}): all-reduce {slower:.1f}x slower "
            f"({nb.allreduce_us_each:,.0f} vs {wb.allreduce_us_each:,.0f} us each); "
        )
    parts = {label: getattr(nb, f) - getattr(wb, f) for f, label in STEP_PARTS.items()}
    label, grew = max(parts.items(), key=lambda kv: kv[1])
    step = f"{label} +{grew:.1f} ms per step; " if grew > 0.05 * wb.total_ms else ""  # worth naming
    gpus = e.gpus / we.gpus
    return (
        f"{step}TPOT {we.tpot_ms:.1f} -> {e.tpot_ms:.1f} ms, tokens/s {e.output_tokens_per_s / we.output_tokens_per_s:.2f}x "
        f"on {gpus:.2f}x the GPUs; "
    )


def _best_seqs(
    space: Space, c: Config, evaluate: Evaluate, q: Question
) -> tuple[ScoredConfig, Evaluation] | None:
    """The neighbour's setup at its best max_num_seqs (solved as the study solves it), if feasible."""
    solved = solve(space, c.setup, evaluate=evaluate, q=q)
    return (solved.best, solved.evaluation) if solved.best.feasible else None
