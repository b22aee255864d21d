"""`tpplan search --tp/--pp`: pinned degrees restrict the space; a pin no profile can run is refused
in one line that names the flag and the degrees that are possible (not an empty study)."""

from __future__ import annotations

from ..errors import ConfigError
from .space import pp_depths


def depths(num_layers: int, budget_gpus: int, *, tps: tuple[int, ...]) -> set[int]:
    """The PP depths the space holds for these TP degrees, before a --pp pin (space.pp_depths)."""
    return {p for tp in tps for p in pp_depths(num_layers, budget_gpus, tp)}


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
