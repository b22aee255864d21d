"""Issue 12's corpus, part 2: faults and what must now work. A search killed with kill -9 (or a trial
left RUNNING with no heartbeat) and re-run completes exactly --trials; a results.jsonl cut or missing
only its last newline resumes with every record valid; tpplan reads back files whose header names
hold line breaks; HF nulls take the architecture's default; detect, sweep and the NVL72 figure."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.cli_helpers import run
from tests.fault_helpers import NCCL, REPO, hf_config, one_error_line

SEARCH = ["search", "tiny", "--profile", "dgx-h100", "--isl", "128", "--osl", "32"]


def _states(out) -> dict[str, int]:
    storage = f"sqlite:///{out / 'study.db'}"
    (summary,) = optuna.get_all_study_summaries(storage, include_best_trial=False)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def _study(out):
    storage = f"sqlite:///{out / 'study.db'}"
    (summary,) = optuna.get_all_study_summaries(storage, include_best_trial=False)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


# ---- Optuna: trials left RUNNING by a dead worker --------------------------------------------------
def test_kill_9_mid_search_then_the_same_command_completes_exactly(tmp_path):
    """A real kill -9 of a search process; the same command then brings COMPLETE to --trials exactly."""
    out = tmp_path / "run"
    args = [sys.executable, "-m", "tpplan", "search", "llama-3.1-70b", "--profile", "dgx-h100"]
    # two GPU types under a client load: 114 setups, so 60 trials do not cover the space
    args += ["--profile", "dgx-a100-80g", "--gpus", "16", "--concurrency", "128"]
    args += ["--isl", "2048", "--osl", "256", "--trials", "60", "--out", str(out)]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    for line in proc.stderr:  # kill it once it is well into its trials
        if "search: trial" in line and int(line.split("trial ")[1].split("/")[0]) >= 12:
            break
        assert time.monotonic() < deadline
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _states(out)
    assert before.get("COMPLETE", 0) < 60 and not (out / "plan.yaml").exists()
    again = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    after = _states(out)
    assert after["COMPLETE"] == 60 and "RUNNING" not in after, (before, after, again.stderr[-1500:])
    from tpplan import io

    assert io.load_plan(out / "plan.yaml").layout.gpus >= 1  # every written record valid


def _inject_running(out, worker: str | None) -> int:
    """A RUNNING trial as a kill -9 before the first heartbeat leaves it: no heartbeat row; with no
    worker, as a kill between Optuna creating the trial and tpplan naming its worker leaves it."""
    study = _study(out)
    trial_id = study._storage.create_new_trial(study._study_id)
    if worker:
        study._storage.set_trial_system_attr(trial_id, "tpplan:worker", worker)
    return trial_id


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize(
    "how", ["dead pid on this host", "no worker recorded"], ids=["dead-pid", "no-worker"]
)
def test_a_running_trial_without_heartbeat_does_not_count(capsys, tmp_path, how):
    out = tmp_path / "run"
    assert run(capsys, *SEARCH, "--trials", "5", "--out", out)[0] == 0
    if how.startswith("dead"):
        _inject_running(out, f"{socket.gethostname()}:{_dead_pid()}")
    else:
        _inject_running(out, None)
    assert _states(out) == {"COMPLETE": 5, "RUNNING": 1}
    rc, _, err = run(capsys, *SEARCH, "--trials", "6", "--out", out)
    assert rc == 0, err
    assert _states(out) == {"COMPLETE": 6, "FAIL": 1}
    failed = [t for t in _study(out).get_trials(deepcopy=False) if t.state == TrialState.FAIL]
    assert "found on resume" in failed[0].user_attrs["fail_reason"]


def test_a_live_workers_running_trial_still_counts(capsys, tmp_path):
    """A RUNNING trial of a process that is alive (this one) is another worker's share: kept."""
    out = tmp_path / "run"
    assert run(capsys, *SEARCH, "--trials", "5", "--out", out)[0] == 0
    _inject_running(out, f"{socket.gethostname()}:{os.getpid()}")
    assert run(capsys, *SEARCH, "--trials", "6", "--out", out)[0] == 0
    assert _states(out) == {"COMPLETE": 5, "RUNNING": 1}


# ---- results.jsonl: a cut line, a line missing only its newline ---------------------------------------
SWEEP = [
    "sweep",
    "tiny",
    "--tp",
    "1",
    "--layers",
    "1",
    "--tokens",
    "8",
    "--iters",
    "2",
    "--warmup",
    "0",
    "--json",
]


@pytest.fixture(scope="module")
def sweep_lines(tmp_path_factory) -> list[str]:
    """Three real Measurement lines from a small CPU sweep (three dtypes at TP=1)."""
    from tpplan.cli import main

    out = tmp_path_factory.mktemp("sweep")
    with pytest.raises(SystemExit) as done:
        main([*SWEEP, "--dtype", "fp32,bf16,fp16", "--out", str(out)])
    assert done.value.code in (0, None)
    return (out / "results.jsonl").read_text().splitlines()


def test_a_whole_last_line_missing_its_newline_is_kept_on_resume(tmp_path, sweep_lines):
    from tpplan.sweep.results import read_results

    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(sweep_lines))  # no final newline
    assert len(read_results(path, repair=True)) == 3
    assert path.read_text() == "\n".join(sweep_lines) + "\n"


def test_a_last_line_cut_mid_write_is_removed_and_the_rest_kept(tmp_path, sweep_lines):
    from tpplan.sweep.results import read_results

    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(sweep_lines[:2]) + "\n" + sweep_lines[2][: len(sweep_lines[2]) // 2])
    assert len(read_results(path, repair=True)) == 2
    assert path.read_text().splitlines() == sweep_lines[:2]


def test_sweep_resume_keeps_a_newline_less_record_and_measures_only_the_rest(capsys, tmp_path, sweep_lines):
    """--resume with the fp32 record lacking its newline: it is kept, and only bf16 and fp16 run."""
    path = tmp_path / "results.jsonl"
    path.write_text(sweep_lines[0])
    rc, out, err = run(capsys, *SWEEP, "--dtype", "fp32,bf16,fp16", "--out", tmp_path, "--resume")
    assert rc == 0, err
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and lines[0] == sweep_lines[0] and path.read_text().endswith("\n")
    assert sorted(json.loads(x)["dtype"] for x in lines) == ["bf16", "fp16", "fp32"]


# ---- a line break in a name that tpplan writes into a YAML header comment ----------------------------
@pytest.mark.parametrize("study", ["a\nb: 1", "x\r\ny", "s\u2028t"], ids=["lf", "crlf", "ls"])
def test_plan_with_a_line_break_in_the_study_name_reads_back(capsys, tmp_path, study):
    out = tmp_path / "run"
    assert run(capsys, *SEARCH, "--trials", "3", "--study", study, "--out", out)[0] == 0
    rc, _, err = run(capsys, "emit", out / "plan.yaml")
    assert rc == 0, err


def test_plan_in_a_directory_with_a_line_break_reads_back(capsys, tmp_path):
    out = tmp_path / "a\nb"
    assert run(capsys, *SEARCH, "--trials", "3", "--out", out)[0] == 0
    assert run(capsys, "emit", out / "plan.yaml")[0] == 0


def test_calibrated_profile_from_a_file_named_with_a_line_break_reads_back(capsys, tmp_path):
    src = tmp_path / "n\nccl: x.txt"
    src.write_text(NCCL.read_text())
    prof = tmp_path / "c\n.yaml"
    assert run(capsys, "calibrate", src, "--profile", "dgx-a100-80g", "--out", prof)[0] == 0
    rc, _, err = run(capsys, "estimate", "allreduce", "--profile", prof, "--bytes", "1MiB", "--ranks", "8")
    assert rc == 0, err


# ---- HF configs: null means the architecture's default ------------------------------------------------
HF_NULLS = {
    "gptj": {
        "architectures": ["GPTJForCausalLM"],
        "n_embd": 4096,
        "n_head": 16,
        "n_layer": 28,
        "n_inner": None,
    },
    "codegen": {
        "architectures": ["CodeGenForCausalLM"],
        "n_embd": 2048,
        "n_head": 16,
        "n_layer": 4,
        "n_inner": None,
    },
    "gpt_neo": {
        "architectures": ["GPTNeoForCausalLM"],
        "hidden_size": 2048,
        "num_heads": 16,
        "num_layers": 24,
        "intermediate_size": None,
    },
    "bloom": {"architectures": ["BloomForCausalLM"], "hidden_size": 2048, "n_head": 16, "n_layer": 4},
    "gpt2": {
        "architectures": ["GPT2LMHeadModel"],
        "n_embd": 768,
        "n_head": 12,
        "n_layer": 12,
        "n_inner": None,
    },
}


@pytest.mark.parametrize("model_type", list(HF_NULLS))
def test_hf_null_ffn_width_is_four_times_hidden(tmp_path, model_type):
    from tpplan import io

    body = {**HF_NULLS[model_type], "model_type": model_type, "vocab_size": 50400, "n_positions": 2048}
    spec = io.load_model(hf_config(tmp_path, model_type, body))
    hidden = body.get("n_embd") or body["hidden_size"]
    assert spec.intermediate_size == 4 * hidden and not spec.gated_mlp


def test_hf_tie_word_embeddings_null_is_the_family_default(tmp_path):
    from tpplan import io

    body = {**HF_NULLS["gpt2"], "model_type": "gpt2", "vocab_size": 50257, "tie_word_embeddings": None}
    assert io.load_model(hf_config(tmp_path, "gpt2", body)).tie_word_embeddings is True


def test_no_valid_layout_says_why(capsys):
    rc, out, _ = run(capsys, "candidates", "llama-3.1-70b", "--profile", "a10g-4x-pcie", "--valid-only")
    assert rc == 0 and "no layout is valid: weights" in out and "exceed" in out


def test_no_layout_at_all_says_why(capsys):
    rc, out, _ = run(capsys, "candidates", "tiny", "--profile", "dgx-h100", "--tp", "4", "--pp", "4")
    assert rc == 0 and "no TP x PP x replica layout matches --tp/--pp" in out


# ---- detect: NVML fails while GPUs are present ---------------------------------------------------------
@pytest.mark.parametrize("signs", [["dev/nvidia0", "dev/nvidiactl"], ["proc/driver/nvidia"], []])
def test_detect_says_what_failed_when_nvml_cannot_start(capsys, tmp_path, monkeypatch, signs):
    root = tmp_path / "root"
    for s in signs:
        (root / s).parent.mkdir(parents=True, exist_ok=True)
        (root / s).mkdir() if s.endswith("nvidia") else (root / s).touch()
    root.mkdir(exist_ok=True)
    monkeypatch.setenv("TPPLAN_FAKE_NVML", str(REPO / "tests/fixtures/topology/nvml-init-fails.yaml"))
    monkeypatch.setenv("TPPLAN_SYSFS_ROOT", str(root))
    rc, _, err = run(capsys, "detect", "--out", tmp_path / "p.yaml")
    assert rc == 0 and "NVML_ERROR_LIB_RM_VERSION_MISMATCH" in err
    if signs:
        assert (
            "NVIDIA GPUs present" in err and str(root / signs[0]) in err and "no NVIDIA GPU found" not in err
        )
    else:
        assert err.startswith("no NVIDIA GPU found")


# ---- sweep on CPU: default TP degrees and the drift tolerance ------------------------------------------
@pytest.mark.parametrize(("cores", "tps"), [(1, [1, 2]), (2, [1, 2]), (4, [1, 2, 4]), (16, [1, 2, 4, 8])])
def test_default_cpu_tp_degrees_follow_the_cores(monkeypatch, cores, tps):
    from tpplan import io
    from tpplan.records.requests import SweepRequest
    from tpplan.sweep.request import prepare

    monkeypatch.setattr("tpplan.sweep.request.cpu_cores", lambda: cores)
    _, cases, _, _ = prepare(io.load_model("tiny"), io.load_profile("cpu-local"), r=SweepRequest(layers=1))
    assert sorted({c.tp for c in cases}) == tps


def test_drift_tolerance_follows_the_dtype_and_flags_override_it():
    from tpplan.records.requests import SweepRequest
    from tpplan.sweep.cases import DRIFT_TOLERANCE, SweepSettings

    assert DRIFT_TOLERANCE["bf16"] > DRIFT_TOLERANCE["fp16"] > DRIFT_TOLERANCE["fp32"]
    fields = {
        k: v
        for k, v in SweepRequest().model_dump().items()
        if k in SweepSettings.model_fields and k != "layers"
    }
    from tpplan import io

    s = SweepSettings(model=io.load_model("tiny"), backend="gloo", layers=1, **fields)
    assert s.tolerance("bf16") == (0.0625, 0.0625) and s.tolerance("fp32") == (1e-5, 1e-5)
    assert s.model_copy(update={"atol": 0.5}).tolerance("bf16") == (0.5, 0.0625)


# ---- the NVL72 topology figure ------------------------------------------------------------------------
def test_nvl72_topology_is_one_72_gpu_domain_in_a_readable_image(tmp_path):
    from tpplan import api
    from tpplan.api.report import read_run
    from tpplan.report import figures_topology
    from tpplan.report.plot import png_bytes

    api.search("llama-3.1-70b", ["gb200-nvl72"], input_tokens=2048, output_tokens=256, trials=5, out=tmp_path)
    drawn = figures_topology.topology(read_run(tmp_path))
    domains = [s for s in drawn.data.series if s.label.startswith("domain ")]
    assert [len(d.x) for d in domains] == [72]
    png = png_bytes(drawn.figure)
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width <= 2000 and height <= 1600 and 0.4 < height / width < 1.5


def test_one_error_line_helper_also_covers_a_plan_file_that_is_not_a_plan(capsys, tmp_path):
    p = tmp_path / "plan.yaml"
    p.write_text(yaml.safe_dump({"model": 3}))
    one_error_line(capsys, ["emit", p], str(p), "model")
