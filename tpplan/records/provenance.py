"""Where one number behind an estimate came from, with its basis as a field.

An estimate, a plan and a calibration name every input number; consumers ask `basis` (is anything
fitted? assumed?) instead of reading it out of a sentence. `str()` gives the line users see:
`value (basis: source)`.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, model_validator

from ..specs.base import Basis, Frozen

# Files written before provenance was a record held the sentence itself.
_SENTENCE = re.compile(r"(?s)(.*) \((published|measured|fitted|derived|given|assumed): (.*)\)")


class Provenance(Frozen):
    """One input number: its value, whether it was measured, fitted, published, derived, given or
    assumed, and the source (a file, a URL, an engine's source line)."""

    value: str = Field(description="the number with its unit (or the numbers, for a fitted curve)")
    basis: Basis = Field(
        description="measured: timed on this hardware; fitted: a parameter fitted to measurements; "
        "published: a vendor or engine figure; derived: computed from other numbers; given: the user's "
        "input; assumed: tpplan's assumption"
    )
    source: str = Field(min_length=1, description="where it came from")

    @model_validator(mode="before")
    @classmethod
    def _from_sentence(cls, data: Any) -> Any:
        """Plan and estimate files written before this record existed: `value (basis: source)`."""
        if isinstance(data, str) and (m := _SENTENCE.fullmatch(data)):
            return {"value": m[1], "basis": m[2], "source": m[3]}
        return data

    def __str__(self) -> str:
        return f"{self.value} ({self.basis}: {self.source})"
