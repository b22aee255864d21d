"""The report's words: the Verdict (which layout won and why, in numbers) and what the run lacks."""

from __future__ import annotations

from .data import RunData, layout_label

BASIS = {
    "measured": "measured: TTFT and TPOT were measured at this layout (serving points given to calibrate)",
    "fitted": "fitted: the cost model, with efficiency parameters fitted to measurements",
    "profile": "profile: the cost model on the hardware profile's published or assumed numbers, nothing fitted",
}


def _vs(name: str, value: float, slo: float | None) -> str:
    if slo is None:
        return f"{name} {value:,.1f} ms (no {name} SLO set)"
    verdict = f"meets it with {100 * (1 - value / slo):.0f}% to spare" if value <= slo else "MISSES it"
    return f"{name} {value:,.1f} ms against an SLO of {slo:g} ms: {verdict}"


def verdict(data: RunData) -> list[str]:
    """One sentence a line: the winner, its numbers against the SLOs, their basis, and its neighbours."""
    plan = data.plan
    if plan is None or plan.estimate is None:
        lines = ["No plan in this run, so no winner: `tpplan search` writes one (see Missing)."]
        ok = [m for m in data.ok if m.tokens_per_s]
        if ok:
            best = max(ok, key=lambda m: m.tokens_per_s or 0.0)
            lines.append(
                f"Fastest measured layout on this machine: {layout_label(best)} of {best.model}, "
                f"{best.tokens_per_s:,.0f} tokens/s (measured, {best.backend})."
            )
        return lines
    e, w = plan.estimate, plan.workload
    slo_ttft = w.slo_ttft_ms if w else None
    slo_tpot = w.slo_tpot_ms if w else None
    lines = [
        f"Winner: TP={e.tp} PP={e.pp} x{e.replicas} replicas ({e.gpus} x {plan.profile.gpu.name}, profile "
        f"{e.profile}), {plan.engine}, max_num_seqs {e.max_num_seqs}, {e.dtype} weights, KV cache {e.kv_cache_dtype}.",
        f"{e.output_tokens_per_usd:,.0f} output tokens per USD: {e.output_tokens_per_s:,.0f} tokens/s over "
        f"{e.gpus} GPUs at ${plan.profile.price.usd_per_gpu_hour.value:g} per GPU-hour, "
        f"{e.concurrency} requests in flight"
        + (f" (ISL {w.input_tokens}, OSL {w.output_tokens})." if w else "."),
        _vs("TPOT", e.tpot_ms, slo_tpot) + "; " + _vs("TTFT", e.ttft_ms, slo_ttft) + ".",
        f"Basis: {BASIS[e.basis]}.",
    ]
    if data.study is not None:
        st = data.study
        lines.append(
            f"Search: {st.trials} trials, {sum(r.feasible for r in st.results)} of {len(st.results)} "
            f"distinct configurations feasible (study {st.name})."
        )
    if plan.why:
        lines.append("Why it won (against the best other layout, then neighbour by neighbour):")
        lines += [f"  - {s}" for s in plan.why]
    return lines


def failed_lines(data: RunData) -> list[str]:
    return [
        f"{layout_label(m)} ({m.key}): {m.status}: {m.reason or 'no reason recorded'}" for m in data.failed
    ]
