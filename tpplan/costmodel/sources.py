"""Measurements `tpplan calibrate` reads, parsed into plain points.

(a) a sweep's `results.jsonl` (issue 7's line format: tp, pp, replicas, dtype, tokens, batch,
    status, step_ms{p50,...}, allreduce{bytes, count_per_step, latency_us{p50,...}}, ...);
    lines that failed, timed out or were cut off by an interrupted sweep are skipped and counted;
(b) the text output of nccl-tests `all_reduce_perf` (its standard table: size count type redop
    [root] time algbw busbw #wrong time algbw busbw #wrong, out-of-place then in-place);
(c) measured serving points in the columns of reference/serving/silicon_calibration.csv;
(d) a `tpplan bench` DIR/bench.jsonl (BenchRecord lines): read as serving points (c), the same fit;
    faults are skipped and counted, and `device` says what the engine ran on (cpu or gpu).
A file that is none of these, or lacks a column the format needs, is a ConfigError naming it.
"""

from __future__ import annotations

import csv
import io as _io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError
from ..io import read_text
from ..records import BenchRecord

SWEEP, NCCL_TESTS, SERVING, BENCH = "sweep", "nccl-tests", "serving", "bench"
OK_STATUSES = ("ok", "measured", "success")
SERVING_COLUMNS = (
    "backend",
    "model_path",
    "isl",
    "osl",
    "batch_size",
    "tp_size",
    "silicon_ttft_ms",
    "silicon_tpot_ms",
)


# (CSV column, ServingPoint field) of every number a serving row must hold, > 0 and finite.
SERVING_NUMBERS = (
    ("isl", "isl"),
    ("osl", "osl"),
    ("batch_size", "concurrency"),
    ("tp_size", "tp"),
    ("pp_size", "pp"),
    ("silicon_ttft_ms", "ttft_ms"),
    ("silicon_tpot_ms", "tpot_ms"),
)


def _finite(path: str, line: int, column: str, value: float) -> None:
    """NaN or inf in a measurement is a corrupt file, not a slow case: it must not reach the fit."""
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(
            f"line {line}: column {column}: {value} is not a finite number",
            file=path,
            expected="a finite measured value in every row",
        )


@dataclass(frozen=True)
class SweepPoint:
    line: int
    tp: int
    dtype: str
    tokens: int
    batch: int
    layers_measured: int
    step_ms: float
    allreduce_bytes: float
    allreduce_count: int
    allreduce_us: float
    model: Any  # the line's `model` field when the sweep recorded one (a name or a spec mapping)


@dataclass(frozen=True)
class NcclPoint:
    bytes: float
    latency_us: float


@dataclass(frozen=True)
class ServingPoint:
    line: int
    engine: str
    model: str
    dtype: str
    isl: int
    osl: int
    concurrency: int
    tp: int
    pp: int
    ttft_ms: float
    tpot_ms: float
    spec_path: str = ""  # a model spec file to load (bench.jsonl names one); "": look `model` up
    max_num_seqs: int | None = None  # the server's sequence cap when recorded (bench.jsonl); None: default


@dataclass
class Parsed:
    kind: str
    path: str
    points: list = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    ranks: int = 0  # nccl-tests: ranks in the all-reduce
    device: str = ""  # bench.jsonl: "cpu" or "gpu", what the engine ran on ("": not recorded)


def sniff(path: Path, text: str) -> str:
    """Which of the three formats a file is, by content."""
    head = text.lstrip()[:4000]
    if head.startswith("{"):
        return BENCH if re.match(r'\{"kind":\s*"tpplan-bench"', head) else SWEEP
    if "all_reduce_perf" in head or re.search(r"#\s+size\s+count\s+type\s+redop", head):
        return NCCL_TESTS
    first = head.splitlines()[0] if head else ""
    if all(col in first.split(",") for col in SERVING_COLUMNS):
        return SERVING
    raise ConfigError(
        "is not a calibration source tpplan recognises",
        file=str(path),
        expected="a sweep results.jsonl, nccl-tests all_reduce_perf output, or a serving CSV with columns "
        + ", ".join(SERVING_COLUMNS),
    )


def read_source(path: Path, representative_only: bool = True) -> Parsed:
    """Parse a calibration source; `representative_only=False` keeps sweep lines whose ranks
    oversubscribed the CPU cores (to compare predictions with, never to fit)."""
    text = read_text(path)
    kind = sniff(path, text)
    if kind == SWEEP:
        return parse_sweep(text, str(path), representative_only=representative_only)
    if kind == BENCH:
        return parse_bench(text, path)
    return {NCCL_TESTS: parse_nccl_tests, SERVING: parse_serving}[kind](text, str(path))


# ---- (a) sweep results.jsonl ------------------------------------------------------------------
def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            raise KeyError(".".join(keys))
        d = d[k]
    return d


def parse_sweep(text: str, path: str, *, representative_only: bool = True) -> Parsed:
    out = Parsed(SWEEP, path)
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError:
            out.skipped.append(f"line {n}: not valid JSON (an interrupted write?)")
            continue
        if not isinstance(rec, dict):
            out.skipped.append(f"line {n}: not a JSON object")
            continue
        status = rec.get("status")
        if status not in OK_STATUSES:
            out.skipped.append(f"line {n}: status {status!r} ({rec.get('reason') or 'no reason given'})")
            continue
        if representative_only and rec.get("representative") is False:
            out.skipped.append(f"line {n}: ranks oversubscribe the CPU cores (representative: false)")
            continue
        try:
            if int(rec.get("pp", 1)) != 1 or int(rec.get("replicas", 1)) != 1:
                out.skipped.append(
                    f"line {n}: pp/replicas > 1 are reported, not fitted (pipeline timing differs)"
                )
                continue
            tp = int(_get(rec, "tp"))
            ar = rec.get("allreduce") or {}
            point = SweepPoint(
                line=n,
                tp=tp,
                dtype=str(_get(rec, "dtype")),
                tokens=int(_get(rec, "tokens")),
                batch=int(rec.get("batch", 1)),
                layers_measured=int(_get(rec, "layers_measured")),
                step_ms=float(_get(rec, "step_ms", "p50")),
                allreduce_bytes=float(ar.get("bytes") or 0),
                allreduce_count=int(ar.get("count_per_step") or 0),
                allreduce_us=float(_get(ar, "latency_us", "p50")) if tp > 1 and ar else 0.0,
                model=rec.get("model"),
            )
        except (KeyError, TypeError, ValueError) as e:
            out.skipped.append(f"line {n}: missing or bad field {e}")
            continue
        _finite(path, n, "step_ms.p50", point.step_ms)
        _finite(path, n, "allreduce.latency_us.p50", point.allreduce_us)
        _finite(path, n, "allreduce.bytes", point.allreduce_bytes)
        if point.step_ms <= 0 or point.tokens < 1 or point.layers_measured < 1:
            out.skipped.append(f"line {n}: non-positive step_ms, tokens or layers_measured")
            continue
        out.points.append(point)
    return out


# ---- (b) nccl-tests all_reduce_perf -------------------------------------------------------------
_NUM = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"


def parse_nccl_tests(text: str, path: str) -> Parsed:
    out = Parsed(NCCL_TESTS, path)
    ranks_seen: set[int] = set()
    n_gpus = n_threads = 1
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s.startswith("#"):
            m = re.search(r"#\s*Rank\s+(\d+)\s+Group", s)
            if m:
                ranks_seen.add(int(m.group(1)))
            m = re.search(r"nThread\s+(\d+)\s+nGpus\s+(\d+)", s)
            if m:
                n_threads, n_gpus = int(m.group(1)), int(m.group(2))
            if "Collective test starting" in s and "all_reduce" not in s:
                raise ConfigError(
                    f"line {n} is a {s.split(':')[-1].strip()} test",
                    file=path,
                    expected="all_reduce_perf output",
                )
            continue
        tokens = s.split()
        # size count type redop [root] | time algbw busbw #wrong | time algbw busbw #wrong
        if not tokens or not re.fullmatch(r"-?\d+", tokens[0]):
            continue
        if len(tokens) < 12:
            out.skipped.append(f"line {n}: cut off ({len(tokens)} of 12 or 13 columns)")
            continue
        tail = tokens[-8:]
        try:
            size = float(tokens[0])
            times = [float(tail[0]), float(tail[4])]
        except ValueError:
            out.skipped.append(f"line {n}: unreadable timing columns")
            continue
        for column, value in (("out-of-place time", times[0]), ("in-place time", times[1])):
            _finite(path, n, column, value)
        if size <= 0 or min(times) <= 0:
            shown = f"{int(size)} bytes" if size <= 0 else f"time {min(times):g} us"
            out.skipped.append(f"line {n}: {shown} is not positive")
            continue
        wrong = [tail[3], tail[7]]
        if any(w not in ("0", "N/A") for w in wrong):
            out.skipped.append(
                f"line {n}: #wrong is {'/'.join(wrong)} at {int(size)} bytes (data check failed)"
            )
            continue
        out.points.append(NcclPoint(size, sum(times) / 2))  # out-of-place and in-place, averaged
    out.ranks = len(ranks_seen) or n_gpus * n_threads
    if not out.points:
        raise ConfigError(
            "has no all_reduce_perf rows",
            file=path,
            expected="nccl-tests output with rows of: size count type redop root time algbw busbw #wrong ...",
        )
    if out.ranks < 2:
        raise ConfigError(
            f"reports {out.ranks} rank(s)", file=path, expected="an all-reduce over 2 or more ranks"
        )
    return out


# ---- (c) serving points -------------------------------------------------------------------------
def parse_serving(text: str, path: str) -> Parsed:
    out = Parsed(SERVING, path)
    reader = csv.DictReader(_io.StringIO(text))
    missing = [c for c in SERVING_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ConfigError(
            f"lacks column(s) {', '.join(missing)}",
            file=path,
            expected="columns " + ", ".join(SERVING_COLUMNS),
        )
    for n, row in enumerate(reader, 2):
        try:
            precision = (row.get("precision") or "bf16").strip().lower()
            point = ServingPoint(
                line=n,
                engine=row["backend"].strip().lower(),
                model=row["model_path"].strip(),
                dtype="fp8" if "fp8" in precision else "fp16" if precision in ("fp16", "float16") else "bf16",
                isl=int(row["isl"]),
                osl=int(row["osl"]),
                concurrency=int(row["batch_size"]),
                tp=int(row["tp_size"]),
                pp=int(row.get("pp_size") or 1),
                ttft_ms=float(row["silicon_ttft_ms"]),
                tpot_ms=float(row["silicon_tpot_ms"]),
            )
        except (TypeError, ValueError) as e:
            out.skipped.append(f"line {n}: {e}")
            continue
        for column, attr in SERVING_NUMBERS:
            value = getattr(point, attr)
            _finite(path, n, column, value)
            if value <= 0:
                raise ConfigError(
                    f"line {n}: column {column}: {value:g} is not positive",
                    file=path,
                    expected="a measured value > 0 in every row",
                )
        out.points.append(point)
    return out


# ---- (d) tpplan bench DIR/bench.jsonl -------------------------------------------------------------
def parse_bench(text: str, path: Path) -> Parsed:
    """Measured points as serving points (mean TTFT and TPOT, as the serving CSV and the cost model
    mean them); the model spec is the bench's model.yaml beside the file."""
    out = Parsed(SERVING, str(path))
    devices = set()
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            rec = BenchRecord.model_validate_json(raw)
        except ValidationError as e:
            bad_json = any(err["type"] == "json_invalid" for err in e.errors())
            why = (
                "not valid JSON (an interrupted write?)"
                if bad_json
                else f"missing or bad field {e.errors()[0]['loc']}"
            )
            out.skipped.append(f"line {n}: {why}")
            continue
        if rec.status != "ok" or rec.measured is None:
            out.skipped.append(f"line {n}: status {rec.status!r} ({rec.reason or 'no reason'})")
            continue
        m = rec.measured
        if m.tpot_ms_mean <= 0 or m.ttft_ms_mean <= 0:
            out.skipped.append(f"line {n}: non-positive TTFT or TPOT")
            continue
        devices.add(rec.device)
        out.points.append(
            ServingPoint(
                line=n,
                engine=rec.engine,
                model=rec.model,
                dtype=rec.dtype,
                isl=rec.isl,
                osl=rec.osl,
                concurrency=rec.concurrency,
                tp=rec.tp,
                pp=rec.pp,
                ttft_ms=m.ttft_ms_mean,
                tpot_ms=m.tpot_ms_mean,
                spec_path=str(path.parent / rec.model_spec),
                max_num_seqs=rec.max_num_seqs,
            )
        )
    if len(devices) > 1:
        raise ConfigError(
            f"mixes devices ({', '.join(sorted(devices))})",
            file=str(path),
            expected="one device per bench file",
        )
    out.device = devices.pop() if devices else ""
    return out


def device_kind(backend: str) -> str:
    """What a profile's devices are: gloo profiles are CPU ranks, nccl ones GPUs."""
    return "cpu" if backend == "gloo" else "gpu"


def check_device(parsed: Parsed, profile_name: str, *, backend: str, allow_other: bool) -> None:
    """A measurement on one device kind never silently recalibrates a profile of another."""
    kind = device_kind(backend)
    if parsed.device and parsed.device != kind and not allow_other:
        raise ConfigError(
            f"was measured on {parsed.device} but profile {profile_name} is a {kind} profile",
            file=parsed.path,
            expected=f"a {parsed.device} profile (e.g. cpu-local), or --allow-other-device to fit it anyway",
        )
