"""`tpplan search --tp/--pp`: pinned degrees restrict the space; a pin no profile can run is refused
in one line that names the flag and the degrees that are possible (not an empty study)."""

from __future__ import annotations

import math

from ..errors import ConfigError


def depths(num_layers: int, budget_gpus: int, *, tps: tuple[int, ...]) -> set[int]:
    """The PP depths the space holds for these TP degrees (space.Space.pps: doublings up to the
    layers and what the budget leaves after TP)."""
    out: set[int] = set()
    for tp in tps:
        limit = min(num_layers, budget_gpus // tp)
        out |= {2**k for k in range(int(math.log2(limit)) + 1)} if limit >= 1 else set()
    return out


def keep(values: tuple[int, ...], pins: list[int] | None) -> tuple[int, ...]:
    return tuple(v for v in values if not pins or v in pins)


def check(pins: list[int] | None, possible: set[int], *, field: str, why: str) -> None:
    """Refuse a pinned degree outside `possible` (the union over the profiles searched)."""
    bad = [v for v in pins or [] if v not in possible]
    if bad:
        raise ConfigError(
            f"{','.join(map(str, bad))} is not possible {why}",
            field=field,
            value=",".join(map(str, pins or [])),
            expected=f"one of {', '.join(map(str, sorted(possible)))}"
            if possible
            else "no degree is possible",
        )
