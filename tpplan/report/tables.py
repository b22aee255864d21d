"""The sweep's results as a table (pandas): one flat row per measurement, exported as CSV and Parquet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import io
from ..records import Measurement

# Column -> how to read it from a Measurement; times in ms or µs as named, bandwidths in GB/s.
COLUMNS = {
    "key": lambda m: m.key,
    "model": lambda m: m.model,
    "tp": lambda m: m.tp,
    "pp": lambda m: m.pp,
    "replicas": lambda m: m.replicas,
    "dtype": lambda m: m.dtype,
    "heads_mode": lambda m: m.heads_mode,
    "status": lambda m: m.status,
    "reason": lambda m: m.reason,
    "backend": lambda m: m.backend,
    "tokens": lambda m: m.tokens,
    "batch": lambda m: m.batch,
    "layers_measured": lambda m: m.layers_measured,
    "layers_total": lambda m: m.layers_total,
    "step_ms_p50": lambda m: m.step_ms.p50 if m.step_ms else None,
    "step_ms_p99": lambda m: m.step_ms.p99 if m.step_ms else None,
    "step_ms_cv": lambda m: m.step_ms.cv if m.step_ms else None,
    "step_ms_full_depth": lambda m: m.step_ms_full_depth,
    "allreduce_bytes": lambda m: m.allreduce.bytes if m.allreduce else None,
    "allreduce_latency_us_p50": lambda m: m.allreduce.latency_us.p50 if m.allreduce else None,
    "allreduce_latency_us_p99": lambda m: m.allreduce.latency_us.p99 if m.allreduce else None,
    "allreduce_busbw_gbps": lambda m: m.allreduce.busbw_gbps if m.allreduce else None,
    "allreduce_share_of_step": lambda m: m.allreduce.share_of_step if m.allreduce else None,
    "busy_frac_min": lambda m: min((r.busy_frac for r in m.ranks), default=None),
    "busy_frac_max": lambda m: max((r.busy_frac for r in m.ranks), default=None),
    "imbalance_pct": lambda m: m.imbalance_pct,
    "heads_per_rank": lambda m: ",".join(map(str, m.heads_per_rank)),
    "drift_max_abs": lambda m: m.drift.max_abs if m.drift else None,
    "drift_max_rel": lambda m: m.drift.max_rel if m.drift else None,
    "drift_tolerance_ratio": lambda m: m.drift.tolerance_ratio if m.drift else None,
    "drift_allclose": lambda m: m.drift.allclose if m.drift else None,
    "tokens_per_s": lambda m: m.tokens_per_s,
    "representative": lambda m: m.representative,
    "measured_at": lambda m: m.measured_at,
}
# What the report's own table shows of them (the CSV has every column).
SHOWN = [
    "tp",
    "pp",
    "replicas",
    "dtype",
    "heads_mode",
    "status",
    "step_ms_p50",
    "allreduce_latency_us_p50",
    "allreduce_share_of_step",
    "imbalance_pct",
    "drift_tolerance_ratio",  # allclose holds iff ≤ 1 (max_rel, in the CSV, overstates near-zero logits)
    "tokens_per_s",
]


def sweep_frame(measurements: list[Measurement]) -> pd.DataFrame:
    """One row per measurement, in results.jsonl order; absent numbers are NaN / None."""
    frame = pd.DataFrame(
        [{name: get(m) for name, get in COLUMNS.items()} for m in measurements], columns=list(COLUMNS)
    )
    return frame.convert_dtypes(dtype_backend="numpy_nullable")


def write_tables(frame: pd.DataFrame, out: Path) -> list[Path]:
    """out/sweep.csv and out/sweep.parquet (pyarrow), the same rows and columns."""
    csv, parquet = out / "sweep.csv", out / "sweep.parquet"
    io.write_text(csv, frame.to_csv(index=False))
    io.write_bytes(parquet, frame.to_parquet(index=False, engine="pyarrow"))
    return [csv, parquet]


def shown_rows(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The report's sweep table: a few columns, numbers rounded for reading."""
    rows = []
    for rec in frame[SHOWN].to_dict("records"):
        rows.append([_cell(v) for v in rec.values()])
    return SHOWN, rows


def _cell(v) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)
