"""enginebench: launch a plan's emitted server command on the real engine, measure it with the
engine's own client, and write one BenchRecord per (layout, concurrency) to DIR/bench.jsonl.

    server.py   start (own process group), wait for /health, stop (SIGTERM, SIGKILL), port checks
    client.py   `vllm bench serve` / `sglang.bench_serving` argv and result JSON -> BenchMetrics
    probe.py    which engine a python runs (version, cpu or gpu)
    runner.py   the loop over layouts and concurrencies; faults become records; --resume
"""

from . import client, probe
from .runner import BenchPoint, EngineEnv, Settings, engine_env_vars, run_bench
from .server import Server, free_port, port_free

BENCH_FILE = "bench.jsonl"

__all__ = [
    "BENCH_FILE",
    "BenchPoint",
    "EngineEnv",
    "Server",
    "Settings",
    "engine_env_vars",
    "free_port",
    "port_free",
    "client",
    "probe",
    "run_bench",
]
