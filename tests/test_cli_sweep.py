"""`tpplan sweep` at the boundary: help with examples, bad flags as one line, the summary it prints."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from tests.sweep_helpers import small_settings
from tpplan.cli import cli
from tpplan.sweep.cases import Case
from tpplan.sweep.collect import measurement, with_padding_cost
from tpplan.sweep.summary import summarize


def test_help_has_examples_and_the_torchrun_command():
    r = CliRunner().invoke(cli, ["sweep", "--help"])
    assert r.exit_code == 0
    for text in (
        "tpplan sweep sweeps/tiny.yaml --tp 1,2,4 --dtype fp32,bf16",
        "--heads uneven,padded",
        "--resume",
        "torchrun --nnodes 2",
        "--timeout-s",
    ):
        assert text in r.output


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["tiny", "--tp", "0"], "ConfigError: --tp: '0' in '0' is not a positive integer"),
        (["tiny", "--dtype", "fp9"], "ConfigError: --dtype: 'fp9' is not a dtype the sweep can run"),
        (["no/such/model.yaml"], "ConfigError: no/such/model.yaml: no such file or bundled model spec"),
        (["tiny", "--tp", "8", "--pp", "4"], "LayoutError: --tp 8 × --pp 4 needs 32 local ranks"),
        (["tiny", "--heads", "sideways"], "ConfigError: --heads: 'sideways' is not a heads form"),
        (
            ["tiny", "--profile", "no-such-profile"],
            "ConfigError: no-such-profile: no such file or bundled hardware",
        ),
        (["tiny", "--host", "192.0.2.1"], "ConfigError: --host: '192.0.2.1' cannot be listened on here"),
    ],
)
def test_bad_flags_are_one_line(args, text, tmp_path):
    r = CliRunner().invoke(cli, ["sweep", *args, "--out", str(tmp_path)])
    assert r.exit_code == 2
    assert r.output.startswith(text) and r.output.count("\n") == 1, r.output
    assert not (tmp_path / "results.jsonl").exists()


def test_records_and_the_sweep_package_do_not_import_torch():
    code = "import sys, tpplan.api, tpplan.sweep, tpplan.records; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    code = (
        "import sys, tpplan.cli; print(sorted({'torch', 'pydantic'} & set(sys.modules)))"  # `tpplan --help`
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _m(mode: str, heads: list[int], cpu: list[float], step: float, per_core: float = 2.0):
    s = small_settings("minicpm-2b", tokens=32, iters=1, timeout_s=9.0)
    case = Case(
        key=mode, tp=len(heads), pp=1, replicas=1, dtype="fp32", heads_mode=mode, engines_accepting=[]
    )
    samples = [
        {
            "rank": r,
            "replica": 0,
            "stage": 0,
            "tp_rank": r,
            "heads": h,
            "kv_heads": h,
            "ar_bytes": 8,
            "step_ms": [step],
            "ar_ms": [[1.0]],
            "p2p_ms": [0.0],
            "cpu_ms": [c],
            "alone_step_ms": None,
            "gpu_util": None,
        }
        for r, (h, c) in enumerate(zip(heads, cpu, strict=True))
    ]
    drift = {
        "dtype": "fp32",
        "reference": "TP=1",
        "max_abs": 0.0,
        "max_rel": 0.0,
        "hidden_max_abs": 2e-6,
        "allclose": True,
    }
    return measurement(
        s, case, samples=samples, drift=drift, ranks_per_core=per_core, microbatches=1, notes=[]
    )


def test_summary_shows_busy_time_by_head_count_and_the_padding_cost():
    uneven = _m("uneven", [5, 5, 5, 5, 4, 4, 4, 4], [10.0] * 4 + [8.0] * 4, 100.0)
    padded = with_padding_cost(_m("padded", [5] * 8, [10.0] * 8, 110.0), uneven)
    assert padded.padding_cost_pct == pytest.approx(100 * (80 / 72 - 1))
    text = "\n".join(summarize([uneven, padded]))
    assert "5 heads: 10.00 ms (4 ranks), 4 heads: 8.00 ms (4 ranks); spread 2.00 ms (20.0%)" in text
    assert "padding adds 4 zero heads (36 -> 40, +11% attention work)" in text
    assert (
        "costs +11.1% busy time over all ranks vs uneven; step p50 110.00 ms vs 100.00 ms uneven, wall clock"
        in text
    )
    assert "not representative" in text
