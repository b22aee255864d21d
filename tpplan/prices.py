"""`--price-usd-per-gpu-hour` on the commands that price a plan: the user's price replaces a profile's
published one, and its provenance says it was given on the command line (topology.profile.user_price,
the one place that says what a price is; `tpplan detect` uses it too)."""

from __future__ import annotations

import datetime

from .errors import ConfigError
from .specs import HardwareProfile
from .specs.hardware import PriceSpec
from .topology.profile import user_price


def priced(profile: HardwareProfile, usd_per_gpu_hour: float | None) -> HardwareProfile:
    """The profile at the user's price (today's date), or unchanged when none was given."""
    if usd_per_gpu_hour is None:
        return profile
    date = datetime.date.today().isoformat()
    price = PriceSpec(usd_per_gpu_hour=user_price(usd_per_gpu_hour, date), date=date)
    return profile.model_copy(update={"price": price})


def parse_prices(items: list[str], profiles: list[str]) -> dict[str, float]:
    """'[PROFILE=]USD' items -> price per profile name. A bare USD prices every profile; PROFILE=USD
    one of them (it wins over a bare one, whatever the order)."""
    out: dict[str, float] = {}
    bare: float | None = None
    for item in items:
        name, sep, text = item.rpartition("=")
        try:
            usd = float(text)
        except ValueError:
            raise ConfigError(
                f"{item!r} has no price",
                field="prices",
                expected="[PROFILE=]USD, e.g. 2.5 or dgx-h100=2.5",
            ) from None
        if not sep:
            bare = usd
        elif name not in profiles:
            raise ConfigError(
                f"{item!r} names no profile of this search",
                field="prices",
                expected=f"PROFILE=USD with PROFILE one of {', '.join(profiles)}",
            )
        else:
            out[name] = usd
    return {p: out.get(p, bare) for p in profiles if p in out or bare is not None}
