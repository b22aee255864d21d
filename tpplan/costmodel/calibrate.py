"""One calibration source in, a calibrated profile and its fit report out (`tpplan calibrate`).

Physical parameters only, shared by every point of a source: all-reduce curves per rank count,
achieved FLOP/s and bandwidth fractions, and per-engine software costs. A fitted number's `source`
names what it was fitted from; `basis` is `fitted`.

- all-reduce (nccl-tests tables, a sweep's measured collectives): alpha, peak busbw, ramp per rank
  count (alpha and peak from 2-4 message sizes; from one size only a scale on the prior curve);
  never more parameters than points, and an exact fit's error is flagged, not shown as accuracy;
- serving points: gemm_fraction, hbm_fraction (not on a GPU with kernel tables: its kernel speed by
  shape is measured), and per engine step_ms and per_seq_us against TPOT
  (log error, L1: robust to the odd outlier), then per engine request_ms and cohort_fraction against
  TTFT. per_layer_us stays at its prior: a set with one model per engine cannot tell it from step_ms;
- sweep steps: gemm_fraction (achieved FLOP/s of the sweep's dtype) and the sweep's step_ms.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError
from ..records import ErrorStats, Provenance, SourceFit
from ..specs import (
    DTYPE_BYTES,
    AllReduceCurve,
    AllReduceFit,
    HardwareProfile,
    ModelSpec,
    ServingSpread,
)
from .collectives import curve_time_us
from .fit import abs_error_stats
from .params import Params, of_sourced
from .profile_fit import (
    ENGINE_FIELDS,
    SWEEP_ENGINE,
    Case,
    affordable,
    describe_fit,
    fit_allreduce,
    fit_curve,
    fit_serving,
    fit_vars,
    serving_vars,
    with_allreduce,
)
from .serving import EngineConfig, Load, steady_state
from .sources import Parsed, ServingPoint, SweepPoint
from .spread import MIN_HELD_APART, spread_of
from .step import Instance, step_cost
from .work import Batch


def serving_case(
    point: ServingPoint,
    model: ModelSpec,
    *,
    engine: EngineConfig,
    kv_tokens: int,
    layers_per_stage: Sequence[int],
    tp_fabric: str,
    pp_fabric: str,
) -> Case:
    """A measured serving point as a Case predicting (TPOT, TTFT)."""
    load = Load(point.isl, point.osl, point.concurrency)
    inst = Instance(model, point.tp, tuple(layers_per_stage), engine.name, point.dtype, tp_fabric, pp_fabric)

    def predict(params: Params, case: Case) -> tuple[float, float]:
        st = steady_state(inst, params, engine=engine, load=load, kv_tokens=kv_tokens, start=case.state)
        case.state = (st.tpot_ms, st.prefill_ms)
        return st.tpot_ms, st.ttft_ms

    return Case(predict, (point.tpot_ms, point.ttft_ms), engine.name)


# ---- one calibration source in, a profile and its fit report out ---------------------------------
def _stats(metric: str, pairs: Sequence[tuple[float, float]], free: int = 0) -> ErrorStats:
    """Error of the fitted model on its own points; `free`: parameters fitted to them (at least as
    many as points: an exact fit, whose ~0 error is no measure of accuracy)."""
    med, p90 = abs_error_stats(pairs)
    return ErrorStats(
        metric=metric,
        points=len(pairs),
        median_abs_pct=round(med, 2),
        p90_abs_pct=round(p90, 2),
        exact=len(pairs) <= free,
    )


def _curve_free(curve: AllReduceCurve) -> int:
    """Parameters a fitted curve took from its points (fit_curve): 1 (a scale), 2 (alpha, busbw) or 4."""
    if curve.median_error_pct is None:
        return curve.points
    return 2 if (curve.half_bytes, curve.shape) == (1.0, 1.0) else 4


def calibrate_nccl(
    profile: HardwareProfile, parsed: Parsed, *, fabric: str, label: str
) -> tuple[HardwareProfile, SourceFit]:
    """nccl-tests all_reduce_perf output: the backend curve of `fabric` at the file's rank count."""
    points = [(p.bytes, p.latency_us) for p in parsed.points]
    source = (
        f"fitted by tpplan calibrate from nccl-tests all_reduce_perf output {label} ({len(points)} sizes)"
    )
    old = profile.efficiency.allreduce_fit(fabric, "backend") if profile.efficiency else None
    kept = {
        c.ranks: c for c in (old.curves if old and old.basis == "fitted" else ()) if c.ranks != parsed.ranks
    }
    new_curve = fit_curve(
        points, parsed.ranks, prior=Params(profile).allreduce_curve(fabric, "backend", ranks=parsed.ranks)[0]
    )
    if kept and old:  # the other rank counts keep their own provenance
        others = ", ".join(map(str, sorted(kept)))
        source = f"{parsed.ranks} ranks: {source}; {others} ranks: {old.source}"
    curves = {**kept, parsed.ranks: new_curve}
    fit = AllReduceFit(
        fabric=fabric,
        implementation="backend",
        curves=tuple(curves[n] for n in sorted(curves)),
        source=source,
        basis="fitted",
    )
    profile = profile.model_copy(update={"efficiency": with_allreduce(profile.efficiency, fit)})
    errors = [
        _stats("allreduce", [(curve_time_us(new_curve, s), t) for s, t in points], _curve_free(new_curve))
    ]
    return profile, SourceFit(
        source=label,
        kind="nccl-tests",
        points=len(points),
        skipped=parsed.skipped,
        fitted=[f"allreduce {fabric}/backend at {parsed.ranks} ranks"],
        errors=errors,
    )


def sweep_case(point: SweepPoint, model: ModelSpec, *, tp_fabric: str) -> Case:
    """A sweep measurement as a Case predicting its step time: `layers_measured` blocks over
    tokens × batch prompt tokens (causal attention), no LM head, the backend's all-reduce."""
    dtype = point.dtype if point.dtype in DTYPE_BYTES else "bf16"
    inst = Instance(
        model.model_copy(update={"dtype": dtype}),
        point.tp,
        (point.layers_measured,),
        SWEEP_ENGINE,
        dtype,
        tp_fabric,
        "pcie",
        engine_kernels=False,
        lm_head=False,
    )
    tokens = point.tokens * point.batch
    batch = Batch(0.0, 0.0, float(tokens), point.tokens / 2, 0.0)

    def predict(params: Params, case: Case) -> tuple[float]:
        return (step_cost(inst, params, batch=batch).time_ms,)

    return Case(predict, (point.step_ms,), SWEEP_ENGINE)


def calibrate_sweep(
    profile: HardwareProfile,
    parsed: Parsed,
    *,
    model: ModelSpec,
    fabric_of: dict[int, str],
    label: str,
    dtype: str | None = None,
) -> tuple[HardwareProfile, SourceFit]:
    """A sweep's results.jsonl: the backend all-reduce curves per TP degree, then the achieved FLOP/s
    (as gemm_fraction of the profile's peak) and the harness's per-step cost, on one dtype."""
    skipped = list(parsed.skipped)
    dtypes = sorted({p.dtype for p in parsed.points})
    if not parsed.points:
        raise ConfigError("has no measured lines to fit", file=label, expected="lines with status ok")
    chosen = dtype or (
        "bf16" if "bf16" in dtypes else max(dtypes, key=lambda d: sum(p.dtype == d for p in parsed.points))
    )
    points = [p for p in parsed.points if p.dtype == chosen]
    skipped += [
        f"line {p.line}: dtype {p.dtype} (fitting {chosen})" for p in parsed.points if p.dtype != chosen
    ]
    if not points:
        raise ConfigError(
            f"has no lines of dtype {chosen}", file=label, expected="one of " + ", ".join(dtypes)
        )
    source = f"fitted by tpplan calibrate from sweep {label} ({len(points)} {chosen} lines)"
    fitted_names = []
    by_fabric: dict[str, dict[int, list[tuple[float, float]]]] = {}
    for p in points:
        if p.tp > 1 and p.allreduce_bytes > 0 and p.allreduce_us > 0:
            by_fabric.setdefault(fabric_of[p.tp], {}).setdefault(p.tp, []).append(
                (p.allreduce_bytes, p.allreduce_us)
            )
    eff = profile.efficiency
    before = Params(profile)
    for fabric, groups in sorted(by_fabric.items()):
        prior = lambda n, f=fabric: before.allreduce_curve(f, "backend", ranks=n)[0]  # noqa: E731
        eff = with_allreduce(
            eff, fit_allreduce(groups, fabric, implementation="backend", source=source, prior=prior)
        )
        fitted_names.append(f"allreduce {fabric}/backend at {', '.join(map(str, sorted(groups)))} ranks")
    profile = profile.model_copy(update={"efficiency": eff})
    cases = [sweep_case(p, model, tp_fabric=fabric_of.get(p.tp, "none")) for p in points]
    # One line determines one parameter: the achieved FLOP/s; the harness's step cost keeps its prior.
    step_vars = affordable([("gemm_fraction", None), ("step_ms", SWEEP_ENGINE)], len(cases))
    profile = fit_vars(profile, cases, variables=step_vars, source=source, target=0)
    fitted_names += [name if engine is None else f"{engine}.{name}" for name, engine in step_vars]
    params = Params(profile)
    errors = [_stats("step", [(c(params)[0], c.measured[0]) for c in cases], len(step_vars))]
    ar_points = [p for p in points if p.tp > 1 and p.allreduce_us > 0]
    curves = {p.tp: params.allreduce_curve(fabric_of[p.tp], "backend", ranks=p.tp)[0] for p in ar_points}
    ar_pairs = [(curve_time_us(curves[p.tp], p.allreduce_bytes), p.allreduce_us) for p in ar_points]
    if ar_pairs:
        errors.append(_stats("allreduce", ar_pairs, sum(_curve_free(c) for c in curves.values())))
    return profile, SourceFit(
        source=label, kind="sweep", points=len(points), skipped=skipped, fitted=fitted_names, errors=errors
    )


def calibrate_serving(
    profile: HardwareProfile, parsed: Parsed, *, cases: Sequence[Case], label: str
) -> tuple[HardwareProfile, SourceFit]:
    engines = sorted({c.engine for c in cases})
    source = (
        f"fitted by tpplan calibrate from serving points {label} ({len(cases)} points: {', '.join(engines)})"
    )
    before = profile
    profile = fit_serving(profile, cases, source=source)
    params = Params(profile)
    tpot_vars, ttft_vars = serving_vars(cases, params.kernels is not None)
    for c in cases:
        c.state = None
    preds = [c(params) for c in cases]
    n_ttft = sum(map(len, ttft_vars.values()))
    errors = [
        _stats("tpot", [(p[0], c.measured[0]) for p, c in zip(preds, cases, strict=True)], len(tpot_vars)),
        _stats("ttft", [(p[1], c.measured[1]) for p, c in zip(preds, cases, strict=True)], n_ttft),
    ]
    for e in engines:
        mine = [(p, c) for p, c in zip(preds, cases, strict=True) if c.engine == e]
        errors += [
            _stats(f"tpot[{e}]", [(p[0], c.measured[0]) for p, c in mine], len(tpot_vars)),
            _stats(f"ttft[{e}]", [(p[1], c.measured[1]) for p, c in mine], len(ttft_vars[e])),
        ]
    fitted_names = [
        name if engine is None else f"{engine}.{name}"
        for name, engine in [*tpot_vars, *(v for vs in ttft_vars.values() for v in vs)]
    ]
    in_sample = None if any(e.exact for e in errors[:2]) else list(zip(preds, cases, strict=True))
    spreads = _spreads(before, cases, in_sample, label)
    if spreads:
        eff = profile.efficiency
        kept = tuple(s for s in eff.serving_spread if s.engine not in {s.engine for s in spreads})
        profile = profile.model_copy(
            update={"efficiency": eff.model_copy(update={"serving_spread": (*kept, *spreads)})}
        )
    return profile, SourceFit(
        source=label,
        kind="serving",
        points=len(cases),
        skipped=parsed.skipped,
        fitted=fitted_names,
        errors=errors,
        spread=spreads,
    )


def _spreads(
    before: HardwareProfile, cases: Sequence[Case], in_sample: list | None, label: str
) -> list[ServingSpread]:
    """Per engine, how far measurements fall from the model: judged on every other point after a fit on
    the rest when both halves are big enough (held apart), else on the fitted points (`in_sample`, None
    for an exact fit, whose ~0 residuals say nothing). Too few points for an engine: none (its estimates
    then carry the bundled fit's spread)."""
    judged, held = in_sample, False
    if len(cases) >= 2 * MIN_HELD_APART:
        source = f"tpplan calibrate: fitted on alternate points of {label}, judged on the others"
        params = Params(fit_serving(before, cases[0::2], source=source))
        for c in cases[1::2]:
            c.state = None
        judged, held = [(c(params), c) for c in cases[1::2]], True
    if not judged:
        return []
    how = "held apart: fitted on alternate points, judged on the others" if held else "on the fitted points"
    out = []
    for e in sorted({c.engine for _, c in judged}):
        mine = [(p, c) for p, c in judged if c.engine == e]
        if len(mine) >= MIN_HELD_APART:
            tpot = [(p[0], c.measured[0]) for p, c in mine]
            ttft = [(p[1], c.measured[1]) for p, c in mine]
            out.append(
                spread_of(
                    e,
                    tpot,
                    ttft_pairs=ttft,
                    held_apart=held,
                    source=f"tpplan calibrate on serving points {label} ({how})",
                )
            )
    return out


# Engines that measurements come from but tpplan does not plan for. The calibration set's TensorRT-LLM
# points ran with the LLM API defaults (max_num_tokens 8192, max_batch_size 2048, the GUARANTEED_NO_EVICT
# scheduler that admits a request only when its whole sequence fits; nvidia.github.io/TensorRT-LLM
# llm-api reference and useful-runtime-flags); its KV budget is approximated by vLLM's memory rule.
# One slot held: at every concurrency N the points' TTFT grows with the output length by about one
# whole request cycle / (N − 1) — the closed-loop wait of N clients on N − 1 running slots — which
# fits a batch cap equal to the benchmark's concurrency with one finished request still holding its
# slot under the overlap scheduler. Assumed (read off this set's points, not from its benchmark setup):
# held-apart TTFT median 34% -> 13% with it.
CALIBRATION_ENGINES = {
    "trtllm": EngineConfig(
        "trtllm",
        8192,
        2048,
        True,
        "TensorRT-LLM LLM API defaults max_num_tokens 8192, max_batch_size 2048, GUARANTEED_NO_EVICT; "
        "one of the clients' slots held by a retiring request (assumed from the calibration points)",
        "assumed",
        held_slots=1,
    ),
}
MEMORY_PROXY = {"trtllm": "vllm", "tpplan-sweep": "vllm"}


def fitted_parameters(profile: HardwareProfile) -> dict[str, Provenance]:
    """Every fitted number of the profile's efficiency section, named, with its source."""
    eff = profile.efficiency
    if not eff:
        return {}
    out = {}
    for name in ("gemm_fraction", "hbm_fraction", "p2p_alpha_us"):
        q = getattr(eff, name)
        if q is not None and q.basis == "fitted":
            out[name] = of_sourced(q)
    for o in eff.overheads:
        for name in ENGINE_FIELDS:
            q = getattr(o, name)
            if q.basis == "fitted":
                out[f"{o.engine}.{name}"] = of_sourced(q)
    for a in eff.allreduce:
        for c in a.curves:
            out[f"allreduce.{a.fabric}.{a.implementation}.{c.ranks}"] = Provenance(
                value=f"alpha {c.alpha_us:g} us, peak busbw {c.peak_busbw_gbps:g} GB/s, half {c.half_bytes:.4g} B, "
                f"shape {c.shape:g}; {describe_fit(c)}",
                basis=a.basis,
                source=a.source,
            )
    return out
