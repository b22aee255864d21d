"""Shared pieces of the input specs: the frozen record base and sourced numbers.

Every hardware number in tpplan carries where it came from (`source`) and how it was
obtained (`basis`): taken from a publication, measured on a machine, fitted from
measurements, derived by arithmetic from sourced numbers, given by the user on the command
line, or assumed for lack of a source.

Units: `_gbps` is GB/s (10^9 bytes/s, as nccl-tests reports busbw), `_gib` is 2^30 bytes,
`_tflops` is 10^12 FLOP/s, `_us`/`_ms` are micro/milliseconds.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Basis = Literal["published", "measured", "fitted", "derived", "given", "assumed"]


class Frozen(BaseModel):
    """Base of every tpplan record: immutable, unknown fields are an error, and types are strict
    (a YAML `"80"` or `true` is not an integer)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Sourced(Frozen):
    """A number with its provenance."""

    value: float = Field(description="the number, in the unit its field name gives")
    source: str = Field(min_length=1, description="where it came from: a URL, a file, a command")
    basis: Basis = Field("published", description="published | measured | fitted | derived | given | assumed")


def _in_range(lo: float, hi: float, unit: str, lo_open: bool = True):
    def check(q: Sourced) -> Sourced:
        ok_lo = q.value > lo if lo_open else q.value >= lo
        if not (ok_lo and q.value <= hi):
            bracket = "(" if lo_open else "["
            raise ValueError(f"value {q.value:g} is out of range; expected {bracket}{lo:g}, {hi:g}] {unit}")
        return q

    return AfterValidator(check)


def bounded(lo: float, hi: float, unit: str, lo_open: bool = True):
    """`Sourced` whose value must lie in (lo, hi] (or [lo, hi]) of `unit`."""
    return Annotated[Sourced, _in_range(lo, hi, unit, lo_open)]


Name = Annotated[str, Field(min_length=1, max_length=200)]
