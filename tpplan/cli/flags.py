"""The one table from a request field (what tpplan.api and the stages name in an error) to the flag a
user typed on the command line. TpplanGroup renames the field of every ConfigError through it, so
`slo_tpot_ms: -3.0 is not valid` reaches the user as `--slo-tpot-ms: -3.0 is not valid`."""

from __future__ import annotations

FLAGS: dict[str, str] = {
    # search
    "input_tokens": "--isl",
    "output_tokens": "--osl",
    "input_tokens + output_tokens": "--isl + --osl",
    "gpus": "--gpus",
    "concurrency": "--concurrency",
    "slo_ttft_ms": "--slo-ttft-ms",
    "slo_tpot_ms": "--slo-tpot-ms",
    "engine": "--engine",
    "calibration": "--calibration",
    "pareto": "--pareto",
    "disaggregated": "--disaggregated/--no-disaggregated",
    "dtypes": "--dtype",
    "dtype": "--dtype",
    "kv_cache_dtypes": "--kv-cache-dtype",
    "max_model_len": "--max-model-len",
    "trials": "--trials",
    "seed": "--seed",
    "storage": "--storage",
    "study": "--study",
    "profiles": "--profile",
    "profile": "--profile",
    "out": "--out",
    # candidates, sweep
    "tp": "--tp",
    "pp": "--pp",
    "replicas": "--replicas",
    "full_budget": "--full-budget",
    "heads": "--heads",
    "tokens": "--tokens",
    "batch": "--batch",
    "layers": "--layers",
    "warmup": "--warmup",
    "iters": "--iters",
    "timeout_s": "--timeout-s",
    "atol": "--atol",
    "rtol": "--rtol",
    "host": "--host",
    # estimate
    "ranks": "--ranks",
    # emit
    "fmt": "--format",
    "replica_mode": "--replicas",
    "port": "--port",
    "node_addrs": "--node-addrs",
    "checkpoint": "--checkpoint",
    "model_path": "--model-path",
    "hf_id": "--hf-id",
    "served_model": "--served-model",
    # bench
    "top": "--top",
    "isl": "--isl",
    "osl": "--osl",
    "isl/osl": "--isl/--osl",
    "engine_python": "--engine-python",
    "start_timeout_s": "--start-timeout-s",
    "client_timeout_s": "--client-timeout-s",
    # report
    "formats": "--format",
    "csv": "--csv",
    "sweep_profile": "--profile",
    # detect
    "nodes": "--nodes",
    "price_usd_per_gpu_hour": "--price-usd-per-gpu-hour",
    "prices": "--price-usd-per-gpu-hour",
    # calibrate
    "sources": "SOURCE",
    "models": "--model",
    "sweep_model": "--sweep-model",
    "allow_other_device": "--allow-other-device",
}


def flag_of(field: str) -> str:
    """The flag for a field; a list item's field (`tp.1`) is its list's flag."""
    head = field.split(".")[0]
    return FLAGS.get(field) or FLAGS.get(head, field)
