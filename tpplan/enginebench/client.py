"""The engine's own benchmark client: its command line, and its result JSON read into BenchMetrics.

- vLLM: `vllm bench serve --dataset-name random --max-concurrency C --ignore-eos --save-result`
  (keys mean_/median_/p99_ ttft_ms, tpot_ms, itl_ms; output_throughput; completed).
- SGLang: `python -m sglang.bench_serving --dataset-name random --max-concurrency C --output-file F`
  (one JSON object per line, the same key names; the last line is this run).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError
from ..records import BenchMetrics

PERCENTILES = "50,99"


def command(
    engine: str,
    bin_dir: Path,
    *,
    port: int,
    model_path: str,
    isl: int,
    osl: int,
    concurrency: int,
    num_prompts: int,
    result: Path,
    served_model_name: str = "",
) -> list[str]:
    """The client's argv; it writes its result JSON to `result`. `served_model_name`: the name the
    server answers to when it is not `model_path` (vLLM's client sends it as the request's model and
    still reads the tokenizer from --model; SGLang's native /generate takes no model name)."""
    common = ["--dataset-name", "random", "--random-input-len", str(isl), "--random-output-len", str(osl)]
    common += ["--num-prompts", str(num_prompts), "--max-concurrency", str(concurrency), "--seed", "0"]
    if engine == "vllm":
        named = ["--served-model-name", served_model_name] if served_model_name else []
        return [
            str(bin_dir / "vllm"), "bench", "serve", "--backend", "vllm",
            "--base-url", f"http://127.0.0.1:{port}", "--model", model_path, *named, *common, "--ignore-eos",
            "--percentile-metrics", "ttft,tpot,itl", "--metric-percentiles", PERCENTILES,
            "--save-result", "--result-dir", str(result.parent), "--result-filename", result.name,
        ]  # fmt: skip
    return [
        str(bin_dir / "python"), "-m", "sglang.bench_serving", "--backend", "sglang",
        "--host", "127.0.0.1", "--port", str(port), "--model", model_path, *common,
        "--random-range-ratio", "1", "--output-file", str(result),
    ]  # fmt: skip


def _num(d: dict, *keys: str) -> float:
    for k in keys:
        if isinstance(d.get(k), int | float):
            return float(d[k])
    raise ConfigError(
        "lacks a field the bench needs", field=keys[0], expected="the engine client's result JSON"
    )


def parse_result(path: Path, usd_per_hour: float) -> BenchMetrics:
    """The client's result file as BenchMetrics; a file without the metrics is a ConfigError."""
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        data = json.loads(lines[-1]) if lines else None
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"is not readable result JSON ({e})", file=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("holds no result object", file=str(path))
    tok_s = _num(data, "output_throughput")
    return BenchMetrics(
        ttft_ms_mean=_num(data, "mean_ttft_ms"),
        ttft_ms_p50=_num(data, "p50_ttft_ms", "median_ttft_ms"),
        ttft_ms_p99=_num(data, "p99_ttft_ms"),
        tpot_ms_mean=_num(data, "mean_tpot_ms"),
        tpot_ms_p50=_num(data, "p50_tpot_ms", "median_tpot_ms"),
        tpot_ms_p99=_num(data, "p99_tpot_ms"),
        itl_ms_p50=_num(data, "p50_itl_ms", "median_itl_ms"),
        itl_ms_p99=_num(data, "p99_itl_ms"),
        output_tokens_per_s=round(tok_s, 3),
        output_tokens_per_usd=round(tok_s * 3600 / usd_per_hour, 1) if usd_per_hour > 0 else 0.0,
        completed=int(_num(data, "completed")),
        failed=int(data.get("failed", 0) or 0) if isinstance(data.get("failed", 0), int) else 0,
    )
