"""Bench each layout at each concurrency: one server per layout, the engine's client per point.

A point already in bench.jsonl is skipped (--resume); every finished point, measured or failed, is
appended (fsync'd) before the next one starts, so a killed bench loses nothing it wrote. A server
that will not start, hangs or dies becomes a record with its reason and log tail, and the bench
goes on with the next layout.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..errors import ConfigError
from ..jsonl import AppendFile
from ..records import BenchMetrics, BenchPredicted, BenchRecord, Layout
from . import client
from .server import Server, log_tail, port_free

KV_CACHE_GIB_CPU = 1  # VLLM_CPU_KVCACHE_SPACE: a tiny model's KV cache needs far less than the default


@dataclass(frozen=True)
class EngineEnv:
    """The engine to run: its bin dir (holding `vllm` / `python`), version and device."""

    engine: str
    bin_dir: Path
    version: str
    device: str  # "cpu" or "gpu"
    model_path: str
    served_model_name: str = ""  # the plan's --served-model-name, which the client must send


@dataclass(frozen=True)
class BenchPoint:
    """One layout: the emitted server text, its port, and its price (for tokens/USD)."""

    layout: Layout
    launch_text: str
    port: int
    usd_per_hour: float


@dataclass(frozen=True)
class Settings:
    isl: int
    osl: int
    concurrencies: tuple[int, ...]
    prompts_per_concurrency: int = 4  # num_prompts = max(8, this x C): a few rounds of the closed loop
    start_timeout_s: float = 600.0
    client_timeout_s: float = 600.0

    def num_prompts(self, concurrency: int) -> int:
        return max(8, self.prompts_per_concurrency * concurrency)


Predict = Callable[[Layout, int], BenchPredicted | None]
Progress = Callable[[str], None]


def engine_env_vars(env: EngineEnv, layout: Layout) -> dict[str, str]:
    """What the engine needs beyond the emitted text. vLLM on CPU: one core list per TP rank
    (VLLM_CPU_OMP_THREADS_BIND "0|1"; it refuses more ranks than lists) and a small KV cache
    (VLLM_CPU_KVCACHE_SPACE, GiB; its default would take a large share of a small machine's RAM)."""
    out = {"PATH": f"{env.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    if env.device == "cpu" and env.engine == "vllm":
        cores = sorted(os.sched_getaffinity(0))
        ranks = layout.tp * layout.pp
        per = max(1, len(cores) // ranks)
        lists = [cores[i * per : (i + 1) * per] or [cores[i % len(cores)]] for i in range(ranks)]
        out["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(",".join(map(str, c)) for c in lists)
        out["VLLM_CPU_KVCACHE_SPACE"] = str(KV_CACHE_GIB_CPU)
    return out


def exact_command(extra: dict[str, str], text: str) -> str:
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in extra.items()) + " " + text


def run_bench(
    points: list[BenchPoint],
    env: EngineEnv,
    *,
    settings: Settings,
    out: AppendFile[BenchRecord],
    common: dict,
    predict: Predict,
    progress: Progress,
) -> list[BenchRecord]:
    """Bench every (layout, concurrency) not yet in `out`; `common`: the record fields every line shares
    (profile, model, model_spec, dtype). Returns the records this run wrote."""
    out_dir = out.path.parent
    written: list[BenchRecord] = []
    for point in points:
        lay = point.layout
        todo = [
            c
            for c in settings.concurrencies
            if (env.engine, lay.tp, lay.pp, lay.replicas, settings.isl, settings.osl, c) not in out.keys
        ]
        if not todo:
            progress(f"TP={lay.tp} PP={lay.pp} x{lay.replicas}: already measured (--resume)")
            continue
        extra = engine_env_vars(env, lay)
        command = exact_command(extra, point.launch_text)
        name = f"tp{lay.tp}-pp{lay.pp}-x{lay.replicas}"

        def record(
            c: int, status: str, reason: str = "", tail: str = "", lay=lay, command=command, **kw
        ) -> BenchRecord:
            rec = _record(env, settings, common, lay, c, status, reason, tail, command, predict, **kw)
            out.append(rec)
            written.append(rec)
            progress(f"{rec.label}: {status}{' - ' + reason if reason else ''}{_summary(rec)}")
            return rec

        server: Server | None = None
        try:
            for i, c in enumerate(todo):
                if server is None or not server.alive():
                    if server is not None:
                        server.stop()
                    if not port_free(point.port):
                        for c2 in todo[i:]:
                            record(
                                c2, "port_in_use", f"port {point.port} is in use before the server started"
                            )
                        break
                    log = out_dir / "logs" / f"{name}.log"
                    server = Server(point.launch_text, {**os.environ, **extra}, point.port, log)
                    progress(
                        f"TP={lay.tp} PP={lay.pp} x{lay.replicas}: starting {env.engine} on port {point.port}"
                    )
                    server.start()
                    status, reason = server.wait_healthy(settings.start_timeout_s)
                    if status != "ok":
                        tail = log_tail(server.log_path)
                        server.stop()
                        server = None
                        for c2 in todo[i:]:
                            record(c2, status, reason, tail)
                        break
                    progress(f"TP={lay.tp} PP={lay.pp} x{lay.replicas}: healthy after {server.startup_s:g} s")
                status, reason, tail, fields = _measure(server, env, settings, point, c, out_dir, name)
                record(c, status, reason, tail, **fields)
        finally:  # whatever happens (an error, Ctrl-C), no server outlives its layout
            if server is not None:
                server.stop()
    return written


def _measure(
    server: Server, env: EngineEnv, settings: Settings, point: BenchPoint, c: int, out_dir: Path, name: str
):
    """Run the client once: (status, reason, log tail, extra fields) for the record."""
    result = out_dir / "results" / f"{name}-c{c}.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    result.unlink(missing_ok=True)
    argv = client.command(
        env.engine, env.bin_dir, port=point.port, model_path=env.model_path,
        isl=settings.isl, osl=settings.osl, concurrency=c, num_prompts=settings.num_prompts(c),
        result=result, served_model_name=env.served_model_name,
    )  # fmt: skip
    client_log = out_dir / "logs" / f"{name}-c{c}.client.log"
    kw = {"client_command": shlex.join(argv), "startup_s": server.startup_s}
    with open(client_log, "wb") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        try:
            rc = proc.wait(timeout=settings.client_timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return (
                "timeout",
                f"the client did not finish within {settings.client_timeout_s:g} s",
                log_tail(server.log_path),
                kw,
            )
    if not server.alive():
        return (
            "died",
            f"the server exited (code {server.proc.returncode}) during the run",
            log_tail(server.log_path),
            kw,
        )
    if rc != 0:
        return "client_failed", f"the client exited with code {rc}", log_tail(client_log), kw
    try:
        metrics = client.parse_result(result, point.usd_per_hour)
    except ConfigError as e:
        return "client_failed", str(e), log_tail(client_log), kw
    if metrics.completed == 0:
        return "client_failed", "no request completed", log_tail(client_log), {**kw, "measured": metrics}
    return "ok", "", "", {**kw, "measured": metrics}


def _record(
    env, settings, common, lay, c, status, reason, tail, command, predict: Predict, **kw
) -> BenchRecord:
    measured: BenchMetrics | None = kw.pop("measured", None)
    predicted = predict(lay, c)
    ratio = {}
    if measured and predicted and status == "ok":
        pairs = (
            ("ttft", predicted.ttft_ms, measured.ttft_ms_mean),
            ("tpot", predicted.tpot_ms, measured.tpot_ms_mean),
            ("output_tokens_per_s", predicted.output_tokens_per_s, measured.output_tokens_per_s),
        )
        ratio = {k: round(p / m, 4) for k, p, m in pairs if m > 0}
    return BenchRecord(
        engine=env.engine,
        engine_version=env.version,
        device=env.device,
        tp=lay.tp,
        pp=lay.pp,
        replicas=lay.replicas,
        isl=settings.isl,
        osl=settings.osl,
        concurrency=c,
        num_prompts=settings.num_prompts(c),
        status=status,
        reason=reason,
        log_tail=tail,
        command=command,
        measured=measured,
        predicted=predicted,
        ratio=ratio,
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        **common,
        **kw,
    )


def _summary(rec: BenchRecord) -> str:
    m = rec.measured
    if rec.status != "ok" or m is None:
        return ""
    p = f"; predicted {rec.predicted.ttft_ms:.3g}/{rec.predicted.tpot_ms:.3g} ms" if rec.predicted else ""
    return (
        f": TTFT {m.ttft_ms_mean:.3g} ms, TPOT {m.tpot_ms_mean:.3g} ms, {m.output_tokens_per_s:.4g} tok/s{p}"
    )
