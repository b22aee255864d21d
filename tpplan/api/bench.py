"""`tpplan bench`: a plan (or a search's run dir) -> the layouts to run ->
the emitted launch text for each (the emit stage: the same text `tpplan emit` writes) -> the engine,
measured by its own client -> DIR/bench.jsonl, each line beside tpplan's estimate of the same point.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from .. import costmodel, enginebench, io
from .. import emit as emit_stage
from ..emit.common import command_text
from ..errors import ConfigError, LayoutError
from ..jsonl import AppendFile
from ..records import BenchPredicted, BenchRecord, Layout, Plan
from ..records.requests import BenchRequest
from ..specs import Workload

MODEL_SPEC = "model.yaml"  # the plan's model spec beside bench.jsonl: calibrate loads it from there
WRITER = "tpplan bench"


def plan_or_run_dir(ref: str | Path) -> Plan:
    """A plan file, or a run dir holding the plan.yaml `tpplan search --out DIR` wrote."""
    path = Path(ref)
    if path.is_dir():
        found = [path / n for n in ("plan.yaml", "plan.yml", "plan.json") if (path / n).is_file()]
        if not found:
            raise ConfigError(
                "has no plan.yaml", file=str(path), expected="a plan file or the --out dir of `tpplan search`"
            )
        path = found[0]
    return io.load_plan(path)


def layouts(plan: Plan, top: int | None, max_ranks: int | None) -> tuple[list[Layout], list[str]]:
    """The winner, then its neighbours as the search names them (TP*2, TP/2, PP+1); one instance each
    (a bench drives one server). `max_ranks`: the CPU cores, on a CPU engine (no rank shares a core)."""
    w, notes = plan.layout, []
    cands = [
        Layout(tp=w.tp, pp=w.pp),
        Layout(tp=w.tp * 2, pp=w.pp),
        *([Layout(tp=w.tp // 2, pp=w.pp)] if w.tp % 2 == 0 else []),
        Layout(tp=w.tp, pp=w.pp + 1),
    ]
    if w.replicas > 1:
        notes.append(
            f"the plan's {w.replicas} replicas are benched as one instance (replicas are independent)"
        )
    out: list[Layout] = []
    for lay in cands:
        ranks = lay.tp * lay.pp
        if lay in out or ranks > plan.profile.gpus_per_node:
            continue
        if max_ranks is not None and ranks > max_ranks:
            notes.append(f"skipped {lay.label()}: {ranks} ranks on {max_ranks} CPU cores would share cores")
            continue
        out.append(lay)
    return out[: top or len(out)], notes


def _predict(plan: Plan, engine: str, isl: int, osl: int):
    fitted = bool(costmodel.fitted_parameters(plan.profile))

    def predict(lay: Layout, concurrency: int) -> BenchPredicted | None:
        load = Workload(
            input_tokens=isl,
            output_tokens=osl,
            concurrency=concurrency,
            dtype=plan.dtype,
            kv_cache_dtype=plan.kv_cache_dtype,
        )
        try:
            e = costmodel.price_layout(
                plan.model,
                plan.profile,
                layout=lay,
                workload=load,
                engine=engine,
                max_num_seqs=plan.max_num_seqs,
                max_model_len=plan.max_model_len,
            )
        except (ConfigError, LayoutError):
            return None
        return BenchPredicted(
            ttft_ms=e.ttft_ms,
            tpot_ms=e.tpot_ms,
            output_tokens_per_s=e.output_tokens_per_s,
            output_tokens_per_usd=e.output_tokens_per_usd,
            basis="fitted" if fitted else "profile",
        )

    return predict


def bench(
    plan_ref: str | Path,
    engine: str,
    out_dir: str | Path,
    *,
    top: int | None = None,
    concurrency: tuple[int, ...] | str = (1, 4, 16),
    isl: int | None = None,
    osl: int | None = None,
    engine_python: str | None = None,
    model_path: str | None = None,
    port: int | None = None,
    resume: bool = False,
    start_timeout_s: float = 600.0,
    client_timeout_s: float = 600.0,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[list[BenchRecord], list[BenchRecord], list[str]]:
    """Bench the plan's layouts at each concurrency; returns (every record of DIR/bench.jsonl, the ones
    this run wrote, notes)."""
    asked = {"top": top, "concurrency": concurrency, "isl": isl, "osl": osl, "port": port}
    asked |= {"start_timeout_s": start_timeout_s, "client_timeout_s": client_timeout_s}
    req = io.validate_request(BenchRequest, asked)
    plan = plan_or_run_dir(plan_ref)
    isl = req.isl or (plan.workload.input_tokens if plan.workload else None)
    osl = req.osl or (plan.workload.output_tokens if plan.workload else None)
    if not isl or not osl:
        raise ConfigError("the plan has no workload", field="isl/osl", expected="--isl I --osl O")
    if isl + osl > plan.max_model_len:
        raise ConfigError(
            f"{isl} + {osl} tokens exceed the plan's max_model_len ({plan.max_model_len})",
            field="isl/osl",
            expected=f"isl + osl <= {plan.max_model_len}, or a plan searched with that --max-model-len",
        )
    path = model_path or plan.model_path
    if not path:
        raise ConfigError("the plan has no model_path", field="model_path", expected="the model dir to serve")
    env = enginebench.probe.probe(engine, engine_python, model_path=path)
    env = dataclasses.replace(env, served_model_name=plan.served_model_name)
    plan = plan.model_copy(update={"model_path": path})
    chosen, notes = layouts(plan, req.top, len(os.sched_getaffinity(0)) if env.device == "cpu" else None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    io.write_text(
        out / MODEL_SPEC, io.to_yaml(plan.model, f"# {plan.model.name}: the model `tpplan bench` ran")
    )
    points = []
    for lay in chosen:
        p = req.port if req.port is not None else enginebench.free_port()
        try:
            launch = emit_stage.emit(
                plan.model_copy(update={"layout": lay}), engine, replica_mode="instances", base_port=p
            )  # type: ignore[arg-type]
        except LayoutError as e:
            notes.append(f"skipped {lay.label()}: {e}")
            continue
        usd = plan.profile.price.usd_per_gpu_hour.value * lay.gpus
        points.append(enginebench.BenchPoint(lay, command_text(launch.processes[0]), p, usd))
    if not points:
        raise LayoutError(f"{engine} accepts none of the layouts to bench: " + "; ".join(notes))
    file = AppendFile(out / enginebench.BENCH_FILE, BenchRecord, WRITER, resume)
    common = {
        "profile": plan.profile.name,
        "model": plan.model.name,
        "model_spec": MODEL_SPEC,
        "dtype": plan.dtype,
        "max_num_seqs": plan.max_num_seqs,
    }
    settings = enginebench.Settings(
        isl,
        osl,
        tuple(req.concurrency),
        start_timeout_s=req.start_timeout_s,
        client_timeout_s=req.client_timeout_s,
    )
    try:
        written = enginebench.run_bench(
            points,
            env,
            settings=settings,
            out=file,
            common=common,
            predict=_predict(plan, engine, isl, osl),
            progress=progress,
        )
    finally:
        file.close()
    return file.records, written, notes
