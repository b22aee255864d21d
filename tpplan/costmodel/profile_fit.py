"""Fitting a profile's parameters: all-reduce curves, and step-level parameters against measurements.

Physical parameters only, shared by every point they are fitted to: all-reduce curves per rank count,
achieved FLOP/s and bandwidth fractions, and per-engine software costs. A fitted number's `source`
says what it was fitted from; `basis` is `fitted`. Numbers are searched exactly and written rounded
to 4 significant digits (what ships is re-derivable and not falsely precise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import median

from ..specs import (
    AllReduceCurve,
    AllReduceFit,
    Efficiency,
    EngineOverhead,
    HardwareProfile,
    Sourced,
)
from .collectives import allreduce_us, curve_time_us, ring_factor
from .fit import fit_log, log_error
from .params import Params

FULL_CURVE_MIN_SIZES = 5  # more sizes than the 4 parameters: the error then says something
SWEEP_ENGINE = "tpplan-sweep"  # the sweep harness's own per-step cost, kept apart from serving engines
MAX_PEAK_OVER_MEASURED = 1.15  # a busbw plateau is what large messages show, not far beyond it
MAX_PEAK_OVER_MEASURED_FEW = 10.0  # with one or two sizes the bandwidth term is barely constrained
# A fraction above 1 raises the profile's peak (apply), but by at most this: beyond it the points only
# say the term is negligible (a tiny model's compute on a real engine), not how fast the device is, and
# an unbounded fit drifted to peaks no profile can hold (1e10 TFLOP/s).
MAX_PEAK_RAISE = 100.0


def _round(x: float, digits: int = 4) -> float:
    """Significant digits: what ships in a profile is re-derivable and not falsely precise."""
    return float(f"{x:.{digits}g}")


def fitted(value: float, source: str, *, exact: bool = False) -> Sourced:
    return Sourced(value=value if exact else _round(value), source=source, basis="fitted")


# ---- all-reduce curves ------------------------------------------------------------------------
def fit_curve(
    points: Sequence[tuple[float, float]], ranks: int, *, prior: AllReduceCurve | None = None
) -> AllReduceCurve:
    """An AllReduceCurve through (bytes, latency_us) points of one rank count.

    As many parameters as the distinct sizes can determine: 4 (alpha, peak, ramp, shape) from 4 or
    more sizes; alpha and a constant busbw from 2-3; from one size only a time scale on `prior` (alpha
    and busbw scaled together, the prior's ramp and shape kept: one point says nothing about them).
    A curve with no more parameters than sizes goes through them exactly: its median_error_pct is None,
    since an in-sample error of ~0 says nothing about accuracy."""
    f = ring_factor(ranks)
    sizes = {s for s, _ in points}
    if len(sizes) == 1 and prior is not None:
        scale = median(t / curve_time_us(prior, s) for s, t in points)
        return AllReduceCurve(
            ranks=ranks,
            alpha_us=_round(prior.alpha_us * scale),
            peak_busbw_gbps=_round(prior.peak_busbw_gbps / scale),
            half_bytes=_round(prior.half_bytes),
            shape=_round(prior.shape),
            points=len(points),
            median_error_pct=None,
        )
    measured_busbw = max(s * f / (t * 1e3) for s, t in points)
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
        return [
            log_error(allreduce_us(a, peak, half_bytes=half, shape=shape, ranks=ranks, nbytes=s), t)
            for s, t in points
        ]

    x0 = [0.8 * t_min, 0.05, 4 * 2**20, 0.7] if len(sizes) >= FULL_CURVE_MIN_SIZES else [0.8 * t_min, 1.0]
    a, peak, half, shape = unpack(fit_log(residuals, x0))
    errs = [
        abs(allreduce_us(a, peak, half_bytes=half, shape=shape, ranks=ranks, nbytes=s) / t - 1) * 100
        for s, t in points
    ]
    return AllReduceCurve(
        ranks=ranks,
        alpha_us=_round(a),
        peak_busbw_gbps=_round(peak),
        half_bytes=_round(half),
        shape=_round(shape),
        points=len(points),
        median_error_pct=_round(median(errs), 3) if len(sizes) > len(x0) else None,
    )


def describe_fit(curve: AllReduceCurve) -> str:
    """How much a fitted curve's points determined it, in words (see fit_curve)."""
    n = f"{curve.points} point{'s' if curve.points != 1 else ''}"
    if curve.median_error_pct is not None:
        return f"{n}, median error {curve.median_error_pct}%"
    if curve.half_bytes == 1.0 and curve.shape == 1.0:
        return f"{n}: fitted alpha and a constant busbw only; exact fit, no held-out check"
    return f"{n} at 1 size: fitted a time scale only; the curve's shape stays the prior's (no held-out check)"


def fit_allreduce(
    groups: dict[int, Sequence[tuple[float, float]]],
    fabric: str,
    *,
    implementation: str,
    source: str,
    prior: Callable[[int], AllReduceCurve] | None = None,
) -> AllReduceFit:
    """One curve per rank count; `prior(n)`: the curve a single message size scales (see fit_curve)."""
    curves = tuple(
        fit_curve(pts, n, prior=prior(n) if prior else None)
        for n, pts in sorted(groups.items())
        if n >= 2 and pts
    )
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
# Physical ranges a fitted engine field is held to, so a small or one-sided set cannot push it to
# a value the engine does not show. request_ms is the time outside the GPU (HTTP, tokenizing,
# scheduling the first step): vLLM and SGLang answer a short prompt at concurrency 1 in ~10-20 ms
# including the prefill, so more than 10 ms would swamp concurrency 1 (issue 14: a fitted 42 ms made
# it ~1.7x too high there). TensorRT-LLM's trtllm-serve is held to 150 ms only: its own points show a
# floor of ~80-110 ms at TP 8 where the 8B prefill takes <10 ms (reference serving set).
# cohort_fraction is κ in the cohort size 1 + κ·(n − 1)^γ (costmodel/serving.py): at least 0.02 keeps
# returning requests from being spread perfectly; at most 1, a whole load returning at once (γ = 1).
FIELD_BOUNDS: dict[str, tuple[float, float]] = {"request_ms": (0.5, 10.0), "cohort_fraction": (0.02, 1.0)}
ENGINE_FIELD_BOUNDS: dict[tuple[str, str], tuple[float, float]] = {("trtllm", "request_ms"): (0.5, 150.0)}


def bounded(name: str, engine: str, *, value: float) -> float:
    """`value` held to the physical range of `engine`'s field `name`."""
    lo, hi = ENGINE_FIELD_BOUNDS.get((engine, name)) or FIELD_BOUNDS.get(name, (0.0, float("inf")))
    return min(max(value, lo), hi)


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
    profile: HardwareProfile, values: dict[Var, float], *, source: str, exact: bool = True
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
        v = min(values[(name, None)], MAX_PEAK_RAISE)
        if v > 1.0:
            peak = getattr(profile.gpu, peak_field)
            why = f"raised to the throughput achieved ({v:.3g}x the profile's {peak.value:g}); {source}"
            gpu_update[peak_field] = fitted(peak.value * v, why, exact=exact)
            v = 1.0
        update[name] = fitted(v, source, exact=exact)
    if gpu_update:
        profile = profile.model_copy(update={"gpu": profile.gpu.model_copy(update=gpu_update)})
    overheads = []
    for engine in sorted({e for _, e in values if e}):
        prior = base.overhead(engine)
        fields = {}
        for name in ENGINE_FIELDS:
            if (name, engine) in values:
                v = values[(name, engine)]
                fields[name] = fitted(bounded(name, engine, value=v), source, exact=exact)
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


def affordable(variables: Sequence[Var], points: int) -> list[Var]:
    """The first `points` of `variables` (in order of what matters most): never fit more parameters than
    there are measurements; the rest keep their current values."""
    return list(variables[: max(1, points)])


def fit_vars(
    profile: HardwareProfile, cases: Sequence[Case], *, variables: Sequence[Var], source: str, target: int
) -> HardwareProfile:
    """Fit `variables` (starting from the profile's current values) to measured value `target` of each
    case, minimising Σ |log(predicted / measured)|. Callers pass `affordable(variables, len(cases))`."""
    x0 = [max(current(profile, v), 1e-3) for v in variables]

    def residuals(x: Sequence[float]) -> list[float]:
        params = Params(apply(profile, dict(zip(variables, x, strict=True)), source=source))
        return [log_error(c(params)[target], c.measured[target]) for c in cases]

    x = fit_log(residuals, x0, robust=True, restarts=1)
    return apply(profile, dict(zip(variables, x, strict=True)), source=source, exact=False)


def fit_serving(profile: HardwareProfile, cases: Sequence[Case], *, source: str) -> HardwareProfile:
    """Hardware fractions and per-engine step costs against TPOT; then per engine the request latency
    and arrival cohorts against TTFT (they barely move TPOT). No more parameters than points."""
    tpot_vars, ttft_vars = serving_vars(cases, Params(profile).kernels is not None)
    profile = fit_vars(profile, cases, variables=tpot_vars, source=source, target=0)
    for e, variables in ttft_vars.items():
        profile = fit_vars(
            profile, [c for c in cases if c.engine == e], variables=variables, source=source, target=1
        )
    return profile


def serving_vars(
    cases: Sequence[Case], kernel_tables: bool = False
) -> tuple[list[Var], dict[str, list[Var]]]:
    """What fit_serving fits from these cases: the TPOT parameters, and per engine the TTFT ones.
    On a GPU with kernel tables the kernels' speed by shape is measured, not fitted: only the engines'
    own costs are left to fit."""
    engines = sorted({c.engine for c in cases})
    tpot_vars: list[Var] = [] if kernel_tables else [("gemm_fraction", None), ("hbm_fraction", None)]
    tpot_vars += [(name, e) for e in engines for name in ("step_ms", "per_seq_us")]
    ttft = {
        e: affordable([("request_ms", e), ("cohort_fraction", e)], sum(c.engine == e for c in cases))
        for e in engines
    }
    return affordable(tpot_vars, len(cases)), ttft
