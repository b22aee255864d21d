"""`tpplan report`: find what a run directory holds, read it with each
stage's own reader (sweep results, Optuna study, plan), price the all-reduce model line and the plan's
step with the cost model, place the plan with the candidates stage, and hand the report stage RunData.

A part that is absent or unreadable becomes a sentence in RunData.missing, never a failure: only a
directory holding nothing tpplan wrote is an error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

from .. import candidates as candidates_stage
from .. import costmodel, io
from ..errors import ConfigError, TpplanError
from ..jsonl import read_jsonl
from ..records import BenchRecord, Candidate, Report, ServeEstimate
from ..records.requests import ReportRequest
from .refs import load_plan, load_profile

EXPECTED = (
    "a run directory of `tpplan demo`, `tpplan sweep --out DIR` or `tpplan search --out DIR` "
    "(results.jsonl, sweep/results.jsonl, study.db, plan.yaml, candidates.json, estimates.json, profile.yaml, "
    "bench.jsonl, bench/bench.jsonl)"
)
MODEL_POINTS = 25  # points of each all-reduce model line, log-spaced over the measured sizes ×1/16..×16


def report(
    run_dir: str | Path,
    *,
    out: str | Path | None = None,
    formats: tuple[str, ...] = ("md",),
    csv: bool = False,
    sweep_profile: str | None = None,
    echo: Callable[[str], None] = print,
) -> Report:
    """Write the report of `run_dir` into `out` (default RUN_DIR/report) in each of `formats`."""
    from .. import report as report_stage  # matplotlib and pandas: only when a report is written

    req = io.validate_request(ReportRequest, {"formats": list(formats), "csv": csv})
    data = read_run(Path(run_dir), sweep_profile)
    target = Path(out) if out is not None else data.run_dir / "report"
    if target.exists() and not target.is_dir():
        raise ConfigError(
            "is a file", file=str(target), field="out", expected="a directory for the report", request=True
        )
    return report_stage.write_report(data, target, formats=tuple(req.formats), csv=req.csv, echo=echo)


def _find(run_dir: Path, *names: str) -> Path | None:
    return next((run_dir / n for n in names if (run_dir / n).is_file()), None)


def read_run(run_dir: Path, sweep_profile: str | None = None):
    """RunData of a run directory: every part found, read; every part missing, said."""
    from ..report import RunData
    from ..sweep import RESULTS, read_results

    if not run_dir.is_dir():
        raise ConfigError(
            "does not exist" if not run_dir.exists() else "is not a directory",
            file=str(run_dir),
            expected=EXPECTED,
        )
    data = RunData(run_dir=run_dir)
    results = _find(run_dir, RESULTS, f"sweep/{RESULTS}") or next(
        iter(sorted(run_dir.glob(f"*/{RESULTS}"))), None
    )
    parts = {
        "results": results,
        "plan": _find(run_dir, "plan.yaml", "plan.yml", "plan.json"),
        "study": _find(run_dir, "study.db"),
        "candidates": _find(run_dir, "candidates.json"),
        "estimates": _find(run_dir, "estimates.json"),
        "profile": _find(run_dir, "profile.yaml"),
        "bench": _find(run_dir, "bench.jsonl", "bench/bench.jsonl"),
    }
    if not any(parts.values()):
        raise ConfigError("holds nothing tpplan wrote", file=str(run_dir), expected=EXPECTED)
    if results is not None:
        data.sweep_file = results
        data.measurements = read_results(results, skipped=data.notes)
        _allreduce_model(data, sweep_profile)
    else:
        data.missing.append(f"no sweep in this run: run `tpplan sweep MODEL --tp 1,2 --out {run_dir}/sweep`")
    data.plan = _read(data, parts["plan"], load_plan)
    data.candidates = _read(data, parts["candidates"], lambda p: _records(p, Candidate)) or []
    data.estimates = _read(data, parts["estimates"], lambda p: _records(p, ServeEstimate)) or []
    data.detected = _read(data, parts["profile"], load_profile)
    data.study = _read(data, parts["study"], lambda p: _study(p, data))
    data.bench = (
        _read(data, parts["bench"], lambda p: read_jsonl(p, BenchRecord, "tpplan bench", skipped=data.notes))
        or []
    )
    if parts["study"] is None and data.plan is None:
        data.missing.append(
            f"no search in this run: run `tpplan search MODEL --profile PROFILE --isl N --osl N "
            f"--out {run_dir}/plan.yaml`"
        )
    elif data.plan is None:
        data.missing.append(
            f"no plan.yaml beside the study: `tpplan search ... --out {run_dir}/plan.yaml` writes it"
        )
    if data.plan is not None:
        _place_plan(data)
    return data


def _read(data, path: Path | None, reader):
    """reader(path), or None with a note when the file is unreadable (the rest of the report goes on)."""
    if path is None:
        return None
    try:
        return reader(path)
    except TpplanError as e:
        data.missing.append(f"{path.name} could not be read: {e}")
        return None


def _records(path: Path, cls) -> list:
    try:
        items = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"is not JSON ({e})", file=str(path)) from None
    if not isinstance(items, list):
        raise ConfigError("is not a JSON list", file=str(path), expected=f"a list of {cls.__name__} records")
    return [io.validate(cls, item, file=f"{path}[{i}]") for i, item in enumerate(items)]


def _allreduce_model(data, sweep_profile: str | None) -> None:
    """The cost model's all-reduce over each measured group size, on the profile the sweep ran on."""
    measured = [
        m for m in data.measurements if m.status == "ok" and m.allreduce and m.allreduce.group_size > 1
    ]
    if not measured:
        return
    backend = measured[0].backend
    ref = sweep_profile or ("cpu-local" if backend == "gloo" else None)
    if ref is None:
        data.missing.append(
            "no all-reduce model line: the sweep ran on NCCL; name its profile with --profile"
        )
        return
    sizes = [m.allreduce.bytes for m in measured]
    lo, hi = math.log2(min(sizes) / 16), math.log2(max(sizes) * 16)
    grid = sorted(
        {int(2 ** (lo + (hi - lo) * i / (MODEL_POINTS - 1))) for i in range(MODEL_POINTS)} | set(sizes)
    )
    try:
        profile = load_profile(ref)
        for tp in sorted({m.allreduce.group_size for m in measured}):
            data.allreduce_model += [
                costmodel.allreduce_on(profile, nbytes=nbytes, ranks=tp) for nbytes in grid
            ]
    except TpplanError as e:
        data.missing.append(f"no all-reduce model line on profile {ref}: {e}")
        return
    data.allreduce_profile = ref
    if sweep_profile is None:
        data.notes.append(
            f"all-reduce model line priced on profile {ref} (the sweep's default on {backend}; "
            "--profile names another)"
        )


def _check_is_optuna_db(path: Path) -> None:
    """Look read-only before Optuna opens the file: its storage would create its tables in any SQLite
    file (a report must never write into what it reads)."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as e:
        raise ConfigError(
            f"is not an SQLite database ({e})", file=str(path), expected="the study.db `tpplan search` writes"
        ) from None
    if not {"studies", "trials"} <= tables:
        raise ConfigError(
            "is an SQLite database without Optuna's tables (studies, trials)",
            file=str(path),
            expected="the study.db `tpplan search` writes",
        )


def _study(path: Path, data):
    """The study `tpplan search` wrote; with several, the one asking the plan's question."""
    from ..report import StudyData
    from ..search import study as study_mod  # optuna: only when a study is read

    _check_is_optuna_db(path)
    stored = study_mod.read_studies(f"sqlite:///{path.resolve()}")
    if not stored:
        raise ConfigError("holds no study", file=str(path), expected="the study.db `tpplan search` writes")
    chosen = stored[-1]
    w = data.plan.workload if data.plan is not None else None
    if len(stored) > 1 and w is not None:
        chosen = next(
            (
                s
                for s in reversed(stored)
                if s.question.get("isl") == w.input_tokens
                and s.question.get("osl") == w.output_tokens
                and s.question.get("slo_tpot_ms") == w.slo_tpot_ms
            ),
            chosen,
        )
        data.notes.append(f"{path.name} holds {len(stored)} studies; the report shows {chosen.name}")
    q = chosen.question
    return StudyData(
        chosen.name,
        str(path),
        chosen.collected.trials,
        chosen.collected.results,
        q.get("slo_ttft_ms"),
        q.get("slo_tpot_ms"),
    )


def _place_plan(data) -> None:
    """The plan's TP groups on its profile's GPUs, and the cost model's step of its layout."""
    plan = data.plan
    lay = plan.layout
    where = candidates_stage.place(plan.profile, lay, budget_gpus=lay.gpus)
    data.winner_groups = [  # per instance, the GPUs of each TP group, as the engines place them
        [list(inst[j * lay.tp : (j + 1) * lay.tp]) for j in range(lay.pp)] for inst in where.rank_gpus
    ]
    if plan.workload is None:
        return
    try:
        data.winner_estimate = costmodel.price_layout(
            plan.model,
            plan.profile,
            layout=lay,  # with the plan's ep / dp_attention
            workload=plan.workload,
            engine=plan.engine,
            max_num_seqs=plan.max_num_seqs,
            max_model_len=plan.max_model_len,
        )
    except TpplanError as e:
        data.missing.append(f"no modelled step for the plan: {e}")
