"""How sure an estimate is: an interval from how far the fit's predictions fell from measurements.

A serving estimate's TTFT and TPOT are multiplied by the 10th and 90th percentiles of measured ÷
predicted over points the fit was judged on (an 80% interval). Where those ratios come from:

- a profile calibrated on serving points (`tpplan calibrate`) keeps its own, per engine, judged on
  every other point after a fit on the rest (held apart) when there are enough points, else on the
  fitted points themselves (said so: that understates the error);
- otherwise the bundled fit's held-apart spread (tpplan/data/estimate_spread.yaml, written by
  scripts/derive_spread.py from the calibration set's split that `make bench` also reports), taken
  as an assumption for this profile and engine.

Tokens per USD follows by Little's law: a replica's C clients finish C / (TTFT + (O−1)·TPOT)
requests per unit time, so its interval ends come from the latency interval's ends (TTFT and TPOT
errors taken as moving together, which makes the interval no narrower than the truth's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from ..records import Provenance
from ..specs import HardwareProfile, ServingSpread
from .fit import quantile

QUANTILES = (0.1, 0.9)  # an 80% interval
SPREAD_DATA = Path(__file__).resolve().parent.parent / "data" / "estimate_spread.yaml"
POOLED = "*"  # the entry that holds for an engine without its own
MIN_HELD_APART = 8  # fewer judged points than this and two percentiles say little


def ratio_quantiles(pairs: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(p10, p90) of measured / predicted over (predicted, measured) pairs."""
    ratios = [m / p for p, m in pairs if p > 0 and m > 0]
    return round(quantile(ratios, QUANTILES[0]), 4), round(quantile(ratios, QUANTILES[1]), 4)


def spread_of(
    engine: str,
    tpot_pairs: Sequence[tuple[float, float]],
    *,
    ttft_pairs: Sequence[tuple[float, float]],
    held_apart: bool,
    source: str,
    basis: str = "fitted",
) -> ServingSpread:
    """A ServingSpread from (predicted, measured) pairs of TPOT and TTFT."""
    t_lo, t_hi = ratio_quantiles(tpot_pairs)
    f_lo, f_hi = ratio_quantiles(ttft_pairs)
    return ServingSpread(
        engine=engine,
        tpot_ratio_p10=t_lo,
        tpot_ratio_p90=t_hi,
        ttft_ratio_p10=f_lo,
        ttft_ratio_p90=f_hi,
        points=len(tpot_pairs),
        held_apart=held_apart,
        source=source,
        basis=basis,  # type: ignore[arg-type]
    )


@cache
def bundled_spreads() -> dict[str, ServingSpread]:
    """The bundled fit's held-apart spreads by engine (the data file's `spreads:`)."""
    data = yaml.safe_load(SPREAD_DATA.read_text())
    return {s["engine"]: ServingSpread.model_validate(s) for s in data["spreads"]}


def spread_for(profile: HardwareProfile, engine: str) -> ServingSpread:
    """This profile's own spread for the engine if its calibration made one, else the bundled fit's."""
    own = profile.efficiency.spread(engine) if profile.efficiency else None
    if own is not None:
        return own
    bundled = bundled_spreads()
    return bundled.get(engine) or bundled[POOLED]


def provenance(spread: ServingSpread, profile: str, *, engine: str) -> Provenance:
    """The interval's provenance: the ratios, over what, and whether this profile's own."""
    value = "80% interval: " + spread.describe()
    if spread.basis == "fitted":
        return Provenance(value=value, basis="fitted", source=spread.source)
    whose = "vLLM and TensorRT-LLM pooled" if spread.engine == POOLED else spread.engine
    return Provenance(
        value=value,
        basis="assumed",
        source=f"assumed from held-apart error of the bundled fit ({whose}) for {engine} on {profile}: "
        + spread.source,
    )


@dataclass(frozen=True)
class Interval:
    ttft_ms_low: float
    ttft_ms_high: float
    tpot_ms_low: float
    tpot_ms_high: float
    output_tokens_per_usd_low: float
    output_tokens_per_usd_high: float

    def fields(self) -> dict[str, float]:
        return dict(self.__dict__)


def interval(
    spread: ServingSpread, *, ttft_ms: float, tpot_ms: float, output_tokens: int, tokens_per_usd: float
) -> Interval:
    """The estimate's interval; tokens/USD scales as 1 / (TTFT + (O−1)·TPOT) (Little's law)."""
    decode = max(output_tokens - 1, 0)
    latency = ttft_ms + decode * tpot_ms
    slow = spread.ttft_ratio_p90 * ttft_ms + decode * spread.tpot_ratio_p90 * tpot_ms
    fast = spread.ttft_ratio_p10 * ttft_ms + decode * spread.tpot_ratio_p10 * tpot_ms
    return Interval(
        ttft_ms_low=round(spread.ttft_ratio_p10 * ttft_ms, 3),
        ttft_ms_high=round(spread.ttft_ratio_p90 * ttft_ms, 3),
        tpot_ms_low=round(spread.tpot_ratio_p10 * tpot_ms, 4),
        tpot_ms_high=round(spread.tpot_ratio_p90 * tpot_ms, 4),
        output_tokens_per_usd_low=round(tokens_per_usd * latency / slow, 1) if slow > 0 else 0.0,
        output_tokens_per_usd_high=round(tokens_per_usd * latency / fast, 1) if fast > 0 else 0.0,
    )


def measured_interval(ttft_ms: float, tpot_ms: float, *, tokens_per_usd: float) -> dict[str, float]:
    """A measured point's interval: the measurement itself (its run-to-run noise is not known here)."""
    return Interval(
        round(ttft_ms, 3),
        round(ttft_ms, 3),
        round(tpot_ms, 4),
        round(tpot_ms, 4),
        tokens_per_usd,
        tokens_per_usd,
    ).fields()
