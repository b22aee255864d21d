"""What a reader of `tpplan sweep` should take away beyond the table: crowded CPU cores, faults, busy
time by head count on uneven splits, the cost of padding, and drift against TP=1 (each read from the
measurements, nothing recomputed)."""

from __future__ import annotations

from collections import defaultdict

from ..records import Measurement


def summarize(found: list[Measurement]) -> list[str]:
    """What a reader should take away beyond the table: faults, imbalance by head count, padding, drift."""
    lines: list[str] = []
    if any(not m.representative for m in found):
        worst = max(m.ranks_per_core for m in found)
        lines.append(
            f"* up to {worst:g} ranks per CPU core: those timings are not representative (ranks wait for a core)"
        )
    for m in found:
        if m.status != "ok":
            lines.append(f"{_label(m)}: {m.status}: {m.reason}")
    for m in found:
        if m.heads_mode == "uneven" and m.status == "ok":
            by = defaultdict(list)
            for r in m.ranks:
                by[r.heads].append(r.busy_ms(m.representative))
            parts = ", ".join(
                f"{h} heads: {sum(v) / len(v):.2f} ms ({len(v)} ranks)"
                for h, v in sorted(by.items(), reverse=True)
            )
            basis = "compute time" if m.representative else "CPU time"
            lines.append(
                f"{_label(m)}: busy {basis} per rank by heads: {parts}; spread {m.busy_spread_ms:.2f} ms "
                f"({m.imbalance_pct:.1f}%)"
            )
    for m in found:
        if m.heads_mode == "padded" and m.status == "ok" and m.step_ms:
            total = sum(m.heads_per_rank)
            text = (
                f"{_label(m)}: padding adds {m.padding_heads} zero heads ({total - m.padding_heads} -> {total}, "
                f"+{100 * m.padding_heads / (total - m.padding_heads):.0f}% attention work)"
            )
            if m.padding_cost_pct is not None:
                twin = next(u for u in found if u.heads_mode == "uneven" and _layout(u) == _layout(m))
                clock = "" if m.representative else ", wall clock, not representative"
                text += (
                    f"; costs {m.padding_cost_pct:+.1f}% busy time over all ranks vs uneven; step p50 "
                    f"{m.step_ms.p50:.2f} ms vs {twin.step_ms.p50:.2f} ms uneven{clock}"
                )
            if m.drift:
                ok = "allclose" if m.drift.allclose else "NOT allclose"
                text += f"; output vs unpadded TP=1: max |d| {m.drift.hidden_max_abs:.1e} ({ok})"
            lines.append(text)
    advice = {a for m in found if m.drift and not m.drift.allclose for a in m.drift.advice}
    failing = [_label(m) for m in found if m.drift and not m.drift.allclose]
    tols = "; ".join(
        sorted({f"{m.dtype} atol {m.drift.atol:g} rtol {m.drift.rtol:g}" for m in found if m.drift})
    )
    if failing:
        lines.append(f"drift: {', '.join(failing)} fail allclose ({tols}) against TP=1; remedies:")
        lines += [f"  - {a}" for a in sorted(advice)]
    elif tols:
        lines.append(f"drift: every TP>1 case is allclose to TP=1 ({tols})")
    return ["", *lines] if lines else []


def _layout(m) -> tuple:
    return (m.tp, m.pp, m.replicas, m.dtype)


def _label(m) -> str:
    return f"TP{m.tp}×PP{m.pp}×R{m.replicas} {m.dtype} {m.heads_mode}"
