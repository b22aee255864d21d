"""Fitting a profile's efficiency parameters to measurements, and saying how well they then fit.

Physical parameters only, shared by every point of a source: all-reduce curves per rank count,
achieved FLOP/s and bandwidth fractions, and per-engine software costs. A fitted number's `source`
names what it was fitted from; `basis` is `fitted`.

- all-reduce (nccl-tests tables, a sweep's measured collectives): alpha, peak busbw, ramp per rank
  count (only alpha and peak when fewer than 4 message sizes were measured);
- serving points: gemm_fraction, hbm_fraction, and per engine step_ms and per_seq_us against TPOT
  (log error, L1 — robust to the odd outlier), then request_ms per engine as the median TTFT residual.
  per_layer_us stays at its prior: a set with one model per engine cannot tell it from step_ms;
- sweep steps: gemm_fraction (achieved FLOP/s of the sweep's dtype) and the sweep's step_ms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import median

from ..errors import ConfigError
from ..records import ErrorStats, SourceFit
from ..specs import (
    DTYPE_BYTES,
    AllReduceCurve,
    AllReduceFit,
    Efficiency,
    EngineOverhead,
    HardwareProfile,
    ModelSpec,
    Sourced,
)
from .collectives import allreduce_us, curve_time_us, ring_factor
from .fit import abs_error_stats, fit_log, log_error
from .params import Params
from .serving import EngineConfig, Load, steady_state
from .sources import Parsed, ServingPoint, SweepPoint
from .step import Instance, step_cost
from .work import Batch

FULL_CURVE_MIN_SIZES = 4
SWEEP_ENGINE = "tpplan-sweep"  # the sweep harness's own per-step cost, kept apart from serving engines
MAX_PEAK_OVER_MEASURED = 1.15  # a busbw plateau is what large messages show, not far beyond it
MAX_PEAK_OVER_MEASURED_FEW = 10.0  # with one or two sizes the bandwidth term is barely constrained


def _round(x: float, digits: int = 4) -> float:
    """Significant digits: what ships in a profile is re-derivable and not falsely precise."""
    return float(f"{x:.{digits}g}")


def fitted(value: float, source: str, exact: bool = False) -> Sourced:
    return Sourced(value=value if exact else _round(value), source=source, basis="fitted")


# ---- all-reduce curves ------------------------------------------------------------------------
def fit_curve(points: Sequence[tuple[float, float]], ranks: int) -> AllReduceCurve:
    """An AllReduceCurve through (bytes, latency_us) points of one rank count."""
    f = ring_factor(ranks)
    measured_busbw = max(s * f / (t * 1e3) for s, t in points)
    sizes = {s for s, _ in points}
    t_min = min(t for _, t in points)

    def unpack(x: Sequence[float]) -> tuple[float, float, float, float]:
        if len(x) == 2:  # too few sizes for a ramp: constant busbw, at most 10x what was measured
            # (latency that does not grow with size says only that the link is fast, not how fast)
            return (
                min(x[0], t_min),
                measured_busbw * (1 + min(x[1], MAX_PEAK_OVER_MEASURED_FEW - 1)),
                1.0,
                1.0,
            )
        alpha, over, half, shape = x
        return (
            alpha,
            measured_busbw * (1 + min(over, MAX_PEAK_OVER_MEASURED - 1)),
            min(half, 1e12),
            min(max(shape, 0.15), 3.0),
        )

    def residuals(x: Sequence[float]) -> list[float]:
        a, peak, half, shape = unpack(x)
        return [log_error(allreduce_us(a, peak, half, shape, ranks, s), t) for s, t in points]

    x0 = [0.8 * t_min, 0.05, 4 * 2**20, 0.7] if len(sizes) >= FULL_CURVE_MIN_SIZES else [0.8 * t_min, 1.0]
    a, peak, half, shape = unpack(fit_log(residuals, x0))
    errs = [abs(allreduce_us(a, peak, half, shape, ranks, s) / t - 1) * 100 for s, t in points]
    return AllReduceCurve(
        ranks=ranks,
        alpha_us=_round(a),
        peak_busbw_gbps=_round(peak),
        half_bytes=_round(half),
        shape=_round(shape),
        points=len(points),
        median_error_pct=_round(median(errs), 3),
    )


def fit_allreduce(
    groups: dict[int, Sequence[tuple[float, float]]], fabric: str, implementation: str, source: str
) -> AllReduceFit:
    curves = tuple(fit_curve(pts, n) for n, pts in sorted(groups.items()) if n >= 2 and pts)
    return AllReduceFit(
        fabric=fabric, implementation=implementation, curves=curves, source=source, basis="fitted"
    )


def with_allreduce(eff: Efficiency | None, new: AllReduceFit) -> Efficiency:
    eff = eff or Efficiency()
    kept = tuple(a for a in eff.allreduce if (a.fabric, a.implementation) != (new.fabric, new.implementation))
    order = {"nvlink": 0, "pcie": 1, "network": 2}
    merged = sorted((*kept, new), key=lambda a: (order[a.fabric], a.implementation))
    return eff.model_copy(update={"allreduce": tuple(merged)})


def with_overheads(eff: Efficiency | None, new: Sequence[EngineOverhead]) -> Efficiency:
    eff = eff or Efficiency()
    names = {o.engine for o in new}
    kept = tuple(o for o in eff.overheads if o.engine not in names)
    return eff.model_copy(update={"overheads": tuple(sorted((*kept, *new), key=lambda o: o.engine))})


# ---- step-level parameters (serving points and sweep steps share this machinery) ------------------
ENGINE_FIELDS = ("step_ms", "per_layer_us", "per_seq_us", "request_ms", "cohort_fraction")
Var = tuple[str, str | None]  # (parameter, engine): ("gemm_fraction", None), ("step_ms", "vllm")


@dataclass
class Case:
    """One measurement and how to predict it: predict(params) -> values in the order of `measured`.
    `state` carries the last steady-state solution, so the next prediction starts near it."""

    predict: Callable[[Params, Case], tuple[float, ...]]
    measured: tuple[float, ...]
    engine: str
    state: tuple[float, float] | None = None

    def __call__(self, params: Params) -> tuple[float, ...]:
        return self.predict(params, self)


def apply(
    profile: HardwareProfile, values: dict[Var, float], source: str, exact: bool = True
) -> HardwareProfile:
    """The profile with these parameters set as fitted (exact while searching; rounded when written).
    A fraction above 1 means the profile's peak is too low (a guessed CPU peak, say): the peak is
    raised to what was achieved, marked fitted, and the fraction set to 1."""
    base = Params(profile)
    eff = profile.efficiency or Efficiency()
    update: dict = {}
    gpu_update: dict = {}
    for name, peak_field in (("gemm_fraction", "bf16_dense_tflops"), ("hbm_fraction", "hbm_gbps")):
        if (name, None) not in values:
            continue
        v = values[(name, None)]
        if v > 1.0:
            peak = getattr(profile.gpu, peak_field)
            why = f"raised to the throughput achieved ({v:.3g}x the profile's {peak.value:g}); {source}"
            gpu_update[peak_field] = fitted(peak.value * v, why, exact)
            v = 1.0
        update[name] = fitted(v, source, exact)
    if gpu_update:
        profile = profile.model_copy(update={"gpu": profile.gpu.model_copy(update=gpu_update)})
    overheads = []
    for engine in sorted({e for _, e in values if e}):
        prior = base.overhead(engine)
        fields = {}
        for name in ENGINE_FIELDS:
            if (name, engine) in values:
                v = values[(name, engine)]
                fields[name] = fitted(min(v, 1.0) if name == "cohort_fraction" else v, source, exact)
            else:
                q = getattr(prior, name)
                fields[name] = Sourced(value=q.value, source=q.source, basis=q.basis)  # type: ignore[arg-type]
        overheads.append(EngineOverhead(engine=engine, **fields))
    eff = (
        with_overheads(eff.model_copy(update=update), overheads)
        if overheads
        else eff.model_copy(update=update)
    )
    return profile.model_copy(update={"efficiency": eff})


def current(profile: HardwareProfile, var: Var) -> float:
    params = Params(profile)
    name, engine = var
    if engine is None:
        return getattr(params, name).value
    return getattr(params.overhead(engine), name).value


def fit_vars(
    profile: HardwareProfile, cases: Sequence[Case], variables: Sequence[Var], source: str, target: int
) -> HardwareProfile:
    """Fit `variables` (starting from the profile's current values) to measured value `target` of each
    case, minimising Σ |log(predicted / measured)|."""
    x0 = [max(current(profile, v), 1e-3) for v in variables]

    def residuals(x: Sequence[float]) -> list[float]:
        params = Params(apply(profile, dict(zip(variables, x, strict=True)), source))
        return [log_error(c(params)[target], c.measured[target]) for c in cases]

    x = fit_log(residuals, x0, robust=True, restarts=1)
    return apply(profile, dict(zip(variables, x, strict=True)), source, exact=False)


def fit_serving(profile: HardwareProfile, cases: Sequence[Case], source: str) -> HardwareProfile:
    """Hardware fractions and per-engine step costs against TPOT; then per engine the request latency
    and arrival cohorts against TTFT (they barely move TPOT)."""
    engines = sorted({c.engine for c in cases})
    tpot_vars: list[Var] = [("gemm_fraction", None), ("hbm_fraction", None)]
    tpot_vars += [(name, e) for e in engines for name in ("step_ms", "per_seq_us")]
    profile = fit_vars(profile, cases, tpot_vars, source, target=0)
    for e in engines:
        mine = [c for c in cases if c.engine == e]
        profile = fit_vars(profile, mine, [("request_ms", e), ("cohort_fraction", e)], source, target=1)
    return profile


def serving_case(
    point: ServingPoint,
    model: ModelSpec,
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
        st = steady_state(inst, params, engine, load, kv_tokens, start=case.state)
        case.state = (st.tpot_ms, st.prefill_ms)
        return st.tpot_ms, st.ttft_ms

    return Case(predict, (point.tpot_ms, point.ttft_ms), engine.name)


# ---- one calibration source in, a profile and its fit report out ---------------------------------
def _stats(metric: str, pairs: Sequence[tuple[float, float]]) -> ErrorStats:
    med, p90 = abs_error_stats(pairs)
    return ErrorStats(
        metric=metric, points=len(pairs), median_abs_pct=round(med, 2), p90_abs_pct=round(p90, 2)
    )


def calibrate_nccl(
    profile: HardwareProfile, parsed: Parsed, fabric: str, label: str
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
    new_curve = fit_curve(points, parsed.ranks)
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
    errors = [_stats("allreduce", [(curve_time_us(new_curve, s), t) for s, t in points])]
    return profile, SourceFit(
        source=label,
        kind="nccl-tests",
        points=len(points),
        skipped=parsed.skipped,
        fitted=[f"allreduce {fabric}/backend at {parsed.ranks} ranks"],
        errors=errors,
    )


def sweep_case(point: SweepPoint, model: ModelSpec, tp_fabric: str) -> Case:
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
        return (step_cost(inst, params, batch).time_ms,)

    return Case(predict, (point.step_ms,), SWEEP_ENGINE)


def calibrate_sweep(
    profile: HardwareProfile,
    parsed: Parsed,
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
    for fabric, groups in sorted(by_fabric.items()):
        eff = with_allreduce(eff, fit_allreduce(groups, fabric, "backend", source))
        fitted_names.append(f"allreduce {fabric}/backend at {', '.join(map(str, sorted(groups)))} ranks")
    profile = profile.model_copy(update={"efficiency": eff})
    cases = [sweep_case(p, model, fabric_of.get(p.tp, "none")) for p in points]
    profile = fit_vars(profile, cases, [("gemm_fraction", None), ("step_ms", SWEEP_ENGINE)], source, target=0)
    fitted_names += ["gemm_fraction", f"{SWEEP_ENGINE}.step_ms"]
    params = Params(profile)
    errors = [_stats("step", [(c(params)[0], c.measured[0]) for c in cases])]
    ar_pairs = [
        (
            curve_time_us(params.allreduce_curve(fabric_of[p.tp], "backend", p.tp)[0], p.allreduce_bytes),
            p.allreduce_us,
        )
        for p in points
        if p.tp > 1 and p.allreduce_us > 0
    ]
    if ar_pairs:
        errors.append(_stats("allreduce", ar_pairs))
    return profile, SourceFit(
        source=label, kind="sweep", points=len(points), skipped=skipped, fitted=fitted_names, errors=errors
    )


def calibrate_serving(
    profile: HardwareProfile, parsed: Parsed, cases: Sequence[Case], label: str
) -> tuple[HardwareProfile, SourceFit]:
    engines = sorted({c.engine for c in cases})
    source = (
        f"fitted by tpplan calibrate from serving points {label} ({len(cases)} points: {', '.join(engines)})"
    )
    profile = fit_serving(profile, cases, source)
    params = Params(profile)
    for c in cases:
        c.state = None
    preds = [c(params) for c in cases]
    errors = [
        _stats("tpot", [(p[0], c.measured[0]) for p, c in zip(preds, cases, strict=True)]),
        _stats("ttft", [(p[1], c.measured[1]) for p, c in zip(preds, cases, strict=True)]),
    ]
    for e in engines:
        mine = [(p, c) for p, c in zip(preds, cases, strict=True) if c.engine == e]
        errors += [
            _stats(f"tpot[{e}]", [(p[0], c.measured[0]) for p, c in mine]),
            _stats(f"ttft[{e}]", [(p[1], c.measured[1]) for p, c in mine]),
        ]
    fitted_names = ["gemm_fraction", "hbm_fraction"] + [
        f"{e}.{n}" for e in engines for n in ("step_ms", "per_seq_us", "request_ms", "cohort_fraction")
    ]
    return profile, SourceFit(
        source=label,
        kind="serving",
        points=len(cases),
        skipped=parsed.skipped,
        fitted=fitted_names,
        errors=errors,
    )


# Engines that measurements come from but tpplan does not plan for. The calibration set's TensorRT-LLM
# points ran with the LLM API defaults (max_num_tokens 8192, max_batch_size 2048, the GUARANTEED_NO_EVICT
# scheduler that admits a request only when its whole sequence fits; nvidia.github.io/TensorRT-LLM
# llm-api reference and useful-runtime-flags); its KV budget is approximated by vLLM's memory rule.
CALIBRATION_ENGINES = {
    "trtllm": EngineConfig(
        "trtllm",
        8192,
        2048,
        True,
        "assumed: TensorRT-LLM LLM API defaults max_num_tokens 8192, max_batch_size 2048, GUARANTEED_NO_EVICT",
    ),
}
MEMORY_PROXY = {"trtllm": "vllm", "tpplan-sweep": "vllm"}


def fitted_parameters(profile: HardwareProfile) -> dict[str, str]:
    """Every fitted number of the profile's efficiency section, named, with its source."""
    eff = profile.efficiency
    if not eff:
        return {}
    out = {}
    for name in ("gemm_fraction", "hbm_fraction", "p2p_alpha_us"):
        q = getattr(eff, name)
        if q is not None and q.basis == "fitted":
            out[name] = q.describe()
    for o in eff.overheads:
        for name in ENGINE_FIELDS:
            q = getattr(o, name)
            if q.basis == "fitted":
                out[f"{o.engine}.{name}"] = q.describe()
    for a in eff.allreduce:
        for c in a.curves:
            out[f"allreduce.{a.fabric}.{a.implementation}.{c.ranks}"] = (
                f"alpha {c.alpha_us:g} us, peak busbw {c.peak_busbw_gbps:g} GB/s, half {c.half_bytes:.4g} B, "
                f"shape {c.shape:g}; {c.points} points, median error {c.median_error_pct}% ({a.basis}: {a.source})"
            )
    return out
