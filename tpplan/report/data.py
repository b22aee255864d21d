"""RunData: what the façade found in a run directory, as records, and what it did not find."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..records import (
    AllReduceEstimate,
    BenchRecord,
    Candidate,
    Measurement,
    Plan,
    ScoredConfig,
    ServeEstimate,
)
from ..specs import HardwareProfile


@dataclass
class StudyData:
    """The search's Optuna study: every distinct configuration it scored, and its SLOs."""

    name: str
    storage: str
    trials: int
    results: list[ScoredConfig]
    slo_ttft_ms: float | None
    slo_tpot_ms: float | None


@dataclass
class RunData:
    """A run directory read back. Every part may be absent; `missing` says which, and how to make it."""

    run_dir: Path
    measurements: list[Measurement] = field(default_factory=list)
    sweep_file: Path | None = None
    # The all-reduce model line: the profile it is priced on (the sweep's) and its points by rank count.
    allreduce_profile: str | None = None
    allreduce_model: list[AllReduceEstimate] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    estimates: list[ServeEstimate] = field(default_factory=list)
    plan: Plan | None = None
    winner_estimate: ServeEstimate | None = None  # the cost model's step of the plan's layout
    # Global GPU indices of each TP group of the plan's layout: [instance][stage] -> GPUs.
    winner_groups: list[list[list[int]]] = field(default_factory=list)
    study: StudyData | None = None
    detected: HardwareProfile | None = None  # profile.yaml, as `tpplan detect` wrote it
    bench: list[BenchRecord] = field(default_factory=list)  # bench.jsonl, as `tpplan bench` wrote it
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> list[Measurement]:
        """Measurements that finished (status ok, with a step time)."""
        return [m for m in self.measurements if m.status == "ok" and m.step_ms is not None]

    @property
    def failed(self) -> list[Measurement]:
        return [m for m in self.measurements if m.status != "ok"]


def layout_label(m: Measurement) -> str:
    """TP2 bf16 (PP and replicas only when > 1; heads form only when not even)."""
    parts = [f"TP{m.tp}"]
    if m.pp > 1:
        parts.append(f"PP{m.pp}")
    if m.replicas > 1:
        parts.append(f"x{m.replicas}")
    parts.append(m.dtype)
    if m.heads_mode != "even":
        parts.append(m.heads_mode)
    return " ".join(parts)
