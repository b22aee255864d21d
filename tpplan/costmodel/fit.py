"""Least-squares fitting in pure Python: Nelder–Mead on log-parameters, error statistics.

The cost model has a handful of physical parameters per fit (a latency, a bandwidth, a fraction),
so a derivative-free simplex search is enough, deterministic, and needs neither numpy nor scipy.
Parameters are searched in log space (they are positive and span decades); errors are measured as
|log(predicted / measured)|, so a 2x over- and under-prediction weigh the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence


def nelder_mead(
    f: Callable[[list[float]], float],
    x0: Sequence[float],
    *,
    step: float = 0.3,
    iterations: int = 600,
    tolerance: float = 1e-9,
    x_tolerance: float = 1e-3,
) -> tuple[list[float], float]:
    """Minimise f from x0 (standard reflection / expansion / contraction / shrink coefficients).
    Stops when the values agree to `tolerance` or the simplex is smaller than `x_tolerance` in
    every coordinate (in log space: 0.1% of each parameter, finer than what is written out)."""
    n = len(x0)
    simplex = [list(x0)] + [[x + (step if j == i else 0.0) for j, x in enumerate(x0)] for i in range(n)]
    values = [f(x) for x in simplex]
    for _ in range(iterations):
        order = sorted(range(n + 1), key=values.__getitem__)
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        if abs(values[-1] - values[0]) <= tolerance * (abs(values[0]) + tolerance):
            break
        if max(abs(p[j] - simplex[0][j]) for p in simplex[1:] for j in range(n)) < x_tolerance:
            break
        centroid = [sum(p[j] for p in simplex[:-1]) / n for j in range(n)]
        worst = simplex[-1]
        reflected = _toward(centroid, worst, -1.0)
        fr = f(reflected)
        if fr < values[0]:
            expanded = _toward(centroid, worst, -2.0)
            fe = f(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            contracted = _toward(centroid, worst, 0.5 if fr >= values[-1] else -0.5)
            fc = f(contracted)
            if fc < min(fr, values[-1]):
                simplex[-1], values[-1] = contracted, fc
            else:
                best = simplex[0]
                simplex = [best] + [
                    [b + 0.5 * (x - b) for b, x in zip(best, p, strict=True)] for p in simplex[1:]
                ]
                values = [values[0]] + [f(p) for p in simplex[1:]]
    i = min(range(n + 1), key=values.__getitem__)
    return simplex[i], values[i]


def _toward(centroid: Sequence[float], worst: Sequence[float], t: float) -> list[float]:
    """centroid + t·(worst − centroid): t = −1 reflects, −2 expands, ±0.5 contracts."""
    return [c + t * (w - c) for c, w in zip(centroid, worst, strict=True)]


def fit_log(
    residuals: Callable[[list[float]], Sequence[float]],
    x0: Sequence[float],
    *,
    robust: bool = False,
    restarts: int = 2,
) -> list[float]:
    """Positive parameters minimising Σ r² (or Σ |r| when robust) of log-space residuals; x0 > 0."""

    def loss(logx: list[float]) -> float:
        r = residuals([math.exp(v) for v in logx])
        return sum(abs(e) for e in r) if robust else sum(e * e for e in r)

    logx = [math.log(v) for v in x0]
    for _ in range(restarts + 1):  # restarting from the best point escapes a collapsed simplex
        logx, _ = nelder_mead(loss, logx)
    return [math.exp(v) for v in logx]


def log_error(predicted: float, measured: float) -> float:
    return math.log(predicted / measured)


def pct_error(predicted: float, measured: float) -> float:
    """Signed error in percent of the measurement."""
    return 100.0 * (predicted - measured) / measured


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile by linear interpolation (numpy's default); nan for no values."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = q * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def abs_error_stats(pairs: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(median, p90) of |predicted − measured| / measured in percent over (predicted, measured) pairs."""
    errs = [abs(pct_error(p, m)) for p, m in pairs]
    return quantile(errs, 0.5), quantile(errs, 0.9)
