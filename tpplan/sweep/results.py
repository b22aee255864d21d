"""DIR/results.jsonl: one `Measurement` per line, appended and flushed to disk as each case ends
(tpplan.jsonl: one fsync'd write per line, so a killed sweep leaves whole lines)."""

from __future__ import annotations

from pathlib import Path

from ..jsonl import AppendFile, read_jsonl
from ..records import Measurement

RESULTS = "results.jsonl"
WRITER = "tpplan sweep"


def read_results(path: Path, repair: bool = False, *, skipped: list[str] | None = None) -> list[Measurement]:
    """Every measurement in `path` (see jsonl.read_jsonl)."""
    return read_jsonl(path, Measurement, WRITER, repair, skipped)


class ResultsFile(AppendFile[Measurement]):
    """The sweep's output file, opened for appending."""

    def __init__(self, out_dir: Path, resume: bool) -> None:
        super().__init__(out_dir / RESULTS, Measurement, WRITER, resume)

    @property
    def measurements(self) -> list[Measurement]:
        return self.records
