"""`tpplan estimate` and `tpplan calibrate` on the command line: help, JSON, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tpplan.cli import cli

DATA = Path(__file__).parent / "data"


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize(
    "cmd", [["estimate"], ["estimate", "allreduce"], ["estimate", "serve"], ["calibrate"]]
)
def test_help_has_examples(cmd):
    r = run(*cmd, "--help")
    assert r.exit_code == 0 and "Examples:" in r.output


def test_allreduce_json_has_the_issue_fields():
    r = run(
        "estimate", "allreduce", "--profile", "dgx-a100-80g", "--bytes", "32MiB", "--ranks", "8", "--json"
    )
    data = json.loads(r.output)
    assert {"latency_us", "algbw_gbps", "busbw_gbps", "fabric"} <= data.keys()
    assert data["bytes"] == 33554432 and data["fabric"] == "nvlink"


def test_serve_json_and_table():
    args = [
        "estimate",
        "serve",
        "llama-3.1-70b",
        "--profile",
        "dgx-h100",
        "--tp",
        "8",
        "--isl",
        "1024",
        "--osl",
        "256",
        "--concurrency",
        "32",
    ]
    data = json.loads(run(*args, "--json").output)
    assert data["layout"]["tp"] == 8 and data["breakdown"]["total_ms"] == pytest.approx(
        data["tpot_ms"], rel=1e-3
    )
    table = run(*args).output
    assert "TTFT" in table and "all-reduce" in table and "from:" in table


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["estimate", "allreduce", "--profile", "dgx-h100", "--bytes", "lots", "--ranks", "8"], "--bytes"),
        (["estimate", "allreduce", "--profile", "dgx-h100", "--bytes", "1M", "--ranks", "0"], "--ranks"),
        (
            ["estimate", "allreduce", "--profile", "nope", "--bytes", "1M", "--ranks", "2"],
            "bundled hardware profile",
        ),
        (["estimate", "allreduce", "--profile", "dgx-h100", "--bytes", "1M", "--ranks", "100001"], "--ranks"),
        (
            ["estimate", "allreduce", "--profile", "l40s-8x-pcie", "--bytes", "1M", "--ranks", "16"],
            "no inter-node",
        ),
        # dgx-h100 has ib-ndr: 9 ranks fail on the uneven split over 2 nodes, not on a missing fabric
        (
            ["estimate", "allreduce", "--profile", "dgx-h100", "--bytes", "1M", "--ranks", "9"],
            "do not split evenly",
        ),
        (
            [
                "estimate",
                "serve",
                "llama-3.1-70b",
                "--profile",
                "dgx-h100",
                "--tp",
                "8",
                "--isl",
                "200000",
                "--osl",
                "256",
                "--concurrency",
                "1",
            ],
            "--isl + --osl",
        ),
        (
            [
                "estimate",
                "serve",
                "tiny",
                "--profile",
                "cpu-local",
                "--tp",
                "3",
                "--isl",
                "8",
                "--osl",
                "8",
                "--concurrency",
                "0",
            ],
            "--concurrency",
        ),
        (
            [
                "estimate",
                "serve",
                "llama-3.1-8b",
                "--profile",
                "dgx-a100-80g",
                "--tp",
                "1",
                "--isl",
                "8",
                "--osl",
                "8",
                "--concurrency",
                "1",
                "--dtype",
                "fp8",
            ],
            "FP8",
        ),
        (
            ["calibrate", str(DATA.parent / "conftest.py"), "--profile", "cpu-local"],
            "not a calibration source",
        ),
        (
            ["calibrate", str(DATA / "sweep_cpu_results.jsonl"), "--profile", "cpu-local", "--model", "x"],
            "NAME=SPEC",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(args, needle):
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.output


def test_calibrate_prints_the_error_per_source_and_writes_the_profile(tmp_path):
    out = tmp_path / "cal.yaml"
    r = run(
        "calibrate",
        str(DATA / "sweep_cpu_results.jsonl"),
        str(DATA / "nccl_all_reduce_perf_8xa100.txt"),
        "--profile",
        "cpu-local",
        "--out",
        str(out),
    )
    assert r.exit_code == 0
    assert "median |err| %" in r.output and "nccl-tests" in r.output and "sweep" in r.output
    assert "basis: fitted" in out.read_text()


def test_costmodel_imports_neither_torch_nor_optuna():
    code = (
        "import sys, tpplan.costmodel, tpplan.api; "
        "bad = [m for m in ('torch', 'optuna') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def serve_args(model: str, tp: int, *extra: str) -> list[str]:
    return [
        "estimate",
        "serve",
        model,
        "--profile",
        "dgx-h100",
        "--tp",
        str(tp),
        "--isl",
        "1024",
        "--osl",
        "256",
        "--concurrency",
        "32",
        *extra,
    ]


def test_allreduce_ranks_error_names_the_flag_and_what_is_valid():
    r = CliRunner().invoke(
        cli, ["estimate", "allreduce", "--profile", "dgx-h100", "--bytes", "1M", "--ranks", "9"]
    )
    assert r.exit_code == 2
    assert "--ranks 9" in r.output and "no inter-node" not in r.output and "1 to 8" in r.output
    assert "10" in r.output.split("valid:")[1]


def test_allreduce_over_two_nodes_of_six_ranks_is_priced():
    """12 ranks on 8-GPU nodes start 6 per node over 2 nodes (world_size / nnodes): a valid group."""
    data = json.loads(
        run(
            "estimate", "allreduce", "--profile", "dgx-h100", "--bytes", "1M", "--ranks", "12", "--json"
        ).output
    )
    assert data["fabric"] == "network" and data["latency_us"] > 0


def test_serve_dtype_defaults_to_the_model_spec():
    assert json.loads(run(*serve_args("deepseek-v3", 8), "--json").output)["dtype"] == "fp8"
    assert json.loads(run(*serve_args("llama-3.1-70b", 8), "--json").output)["dtype"] == "bf16"
    assert "the model spec's" in " ".join(run("estimate", "serve", "--help").output.split())


def test_serve_engine_refusal_is_apart_from_memory_and_shows_no_numbers():
    text = run(*serve_args("llama-3.1-70b", 3)).output
    assert "vllm refuses TP=3" in text and "does not fit" not in text
    assert "accepts tp in 1, 2, 4, 8" in text
    assert "mean time to first token" not in text and "not be achievable" in text
    data = json.loads(run(*serve_args("llama-3.1-70b", 3), "--json").output)
    assert data["engine_ok"] is False and data["fits"] is True and data["runnable"] is False
    assert data["engine_reasons"] and "ttft_ms" in data


def test_serve_that_does_not_fit_memory_shows_no_numbers():
    text = run(*serve_args("deepseek-v3", 8, "--dtype", "bf16")).output
    assert "does not fit: weights 157.9 GiB" in text and "refuses" not in text
    assert "mean time per output token" not in text and "not be achievable" in text
    data = json.loads(run(*serve_args("deepseek-v3", 8, "--dtype", "bf16"), "--json").output)
    assert data["engine_ok"] is True and data["fits"] is False and data["runnable"] is False


def test_old_serve_records_read_back_with_runnable_from_fits():
    from tpplan.records import ServeEstimate

    data = json.loads(run(*serve_args("llama-3.1-70b", 8), "--json").output)
    for key in ("engine_ok", "engine_reasons", "runnable", "ttft_note"):
        data.pop(key)
    data["fits"] = False
    assert ServeEstimate.model_validate(data).runnable is False


def test_calibrate_output_calls_an_exact_fit_exact(tmp_path):
    line = next(
        ln for ln in (DATA / "sweep_cpu_results.jsonl").read_text().splitlines() if '"status": "ok"' in ln
    )
    sweep = tmp_path / "one.jsonl"
    sweep.write_text(line + "\n")
    r = run("calibrate", str(sweep), "--profile", "cpu-local", "--sweep-model", "tiny")
    assert r.exit_code == 0 and "exact fit" in r.output and "no held-out check" in r.output


def test_serve_says_how_rough_its_ttft_is():
    text = run(*serve_args("llama-3.1-70b", 8)).output
    (note,) = [line for line in text.splitlines() if line.startswith("note: TTFT")]
    assert "make bench" in note
    assert "make bench" in json.loads(run(*serve_args("llama-3.1-70b", 8), "--json").output)["ttft_note"]
