"""The sweep executor: real sharded forward passes over a real process group, measured.

    request.py   flags checked against the model and machine, the layer sample      (no torch)
    cases.py     cases (layout x dtype x heads form) and the settings every rank gets (no torch)
    runner.py    one process group per world size, faults recorded, torchrun entry  (no torch)
    results.py   DIR/results.jsonl, appended and fsync'd line by line               (no torch)
    worker.py    one rank: builds its shard, times warm-up and timed steps          (torch)
    model.py     the decoder stack at real widths; shard.py the TP plan; dist.py the process group
    timing.py    clocks, percentiles, busbw; collect.py samples -> Measurement; faults.py; progress.py
    summary.py   what a reader should take from the measurements beyond the table     (no torch)

Importing this package does not import torch: only the ranks (worker and what it imports) do.
"""

from .cases import Case, SweepJob, SweepSettings
from .results import RESULTS, read_results
from .runner import run_sweep

__all__ = ["Case", "SweepJob", "SweepSettings", "RESULTS", "read_results", "run_sweep"]
