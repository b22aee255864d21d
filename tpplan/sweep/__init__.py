"""The sweep executor: real sharded forward passes over a real process group, measured.

    plan.py      cases, settings and the layer sample (no torch)
    runner.py    launches one process group per world size, records faults, results.jsonl (no torch)
    worker.py    one rank: builds its shard, times warm-up and timed steps (torch)
    model.py     the decoder stack at real widths; shard.py the TP plan; dist.py the process group
    timing.py    clocks, percentiles, busbw; collect.py samples -> Measurement; progress.py the bar

Importing this package does not import torch: only the ranks (worker and what it imports) do.
"""

from .plan import Case, SweepJob, SweepSettings
from .results import RESULTS, read_results
from .runner import run_sweep

__all__ = ["Case", "SweepJob", "SweepSettings", "RESULTS", "read_results", "run_sweep"]
