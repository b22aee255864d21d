"""Why a layout or a configuration cannot run as asked, as a typed record.

Every check that refuses something (an engine rule, the memory budget, the context a KV cache holds,
where the instances land, the search's batch and SLO limits) writes one `Reason`. Consumers select by
`kind`, never by reading the sentence; `str()` gives the sentence users see.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..specs.base import Frozen

ReasonKind = Literal["engine", "memory", "context", "placement", "batch", "slo"]


class Reason(Frozen):
    """One refusal: which check made it, what it found, and where the rule comes from."""

    kind: ReasonKind = Field(
        description="engine: the engine's own rules refuse the layout; memory: weights + activations exceed "
        "the memory budget; context: the KV cache holds fewer tokens than one sequence needs; placement: "
        "the instances cannot be placed on the budget's nodes; batch: max_num_seqs is more than the KV "
        "cache holds; slo: a latency SLO is missed"
    )
    text: str = Field(description="what was found, in numbers, without its citation or advice")
    source: str | None = Field(
        None, description="where the rule is written (engine and source file:line); None: tpplan's own check"
    )
    hint: str | None = Field(None, description="what would get past it (valid values, a flag to change)")

    def __str__(self) -> str:
        cited = f"{self.text} [{self.source}]" if self.source else self.text
        return f"{cited}; {self.hint}" if self.hint else cited

    def uncited(self) -> str:
        """The sentence without its source citation, for one-line views (an engine rule's advice
        follows its citation and is dropped with it; tpplan's own checks keep theirs)."""
        return self.text if self.source else str(self)
