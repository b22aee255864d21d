"""Issue 12's corpus, part 1: bad inputs. Each exits non-zero with ONE line naming the input, the field,
the value and what is valid; no traceback; under 5 s; bounded memory (in-process: the peak RSS may not
grow by more than 300 MiB; the input caps run in a child under RLIMIT_AS). By class:
output paths, --seed, --bytes, calibration values, input caps. Faults (kill -9, cut files, resume)
and the fixed behaviours (headers, HF defaults, detect, sweep, NVL72) are in test_fault_corpus_runs.py."""

from __future__ import annotations

import pytest

from tests.fault_helpers import (
    NCCL,
    alias_bomb,
    blocked_dir,
    deep_json,
    deep_yaml,
    disk_full,
    file_in_the_way,
    limited_cli,
    nccl_with,
    one_error_line,
    serving_csv,
    sweep_jsonl_with,
    yaml_file,
)

SEARCH = ["search", "tiny", "--profile", "dgx-h100", "--isl", "128", "--osl", "32", "--trials", "3"]
CALIBRATE = ["calibrate", str(NCCL), "--profile", "dgx-a100-80g"]


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory):
    """A real search run (plan.yaml + study.db) that emit and report read."""
    from tpplan import api

    out = tmp_path_factory.mktemp("run")
    api.search("tiny", ["dgx-h100"], input_tokens=128, output_tokens=32, trials=3, out=out)
    return out


# ---- output paths: a file in the way, a refused directory, a full disk ------------------------------
def _commands(plan_dir, out):
    return {
        "emit": ["emit", plan_dir / "plan.yaml", "--out", out / "launch.sh"],
        "search": [*SEARCH, "--out", out / "run"],
        "calibrate": [*CALIBRATE, "--out", out / "p.yaml"],
        "report": ["report", plan_dir, "--out", out / "rep"],
        "sweep": ["sweep", "tiny", "--tp", "1", "--out", out / "sw"],
        "demo": ["demo", "--out", out / "demo"],
        "detect": ["detect", "--out", out / "p.yaml"],
    }


COMMANDS = ["emit", "search", "calibrate", "report", "sweep", "demo", "detect"]


@pytest.mark.parametrize("command", COMMANDS)
def test_output_under_a_regular_file(capsys, tmp_path, plan_dir, command):
    blocker = file_in_the_way(tmp_path)
    args = _commands(plan_dir, blocker)[command]
    one_error_line(
        capsys, args, str(blocker), "--out", "cannot be written", "is a file", "expected a writable path"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_output_in_a_directory_the_os_refuses(capsys, tmp_path, plan_dir, command):
    refused = blocked_dir(tmp_path)
    args = _commands(plan_dir, refused)[command]
    one_error_line(capsys, args, str(refused), "--out", "permission denied", "expected a writable path")


@pytest.mark.parametrize("command", ["emit", "search", "calibrate", "report"])
def test_output_on_a_full_disk(capsys, tmp_path, plan_dir, monkeypatch, command):
    args = _commands(plan_dir, tmp_path)[command]
    disk_full(monkeypatch)
    one_error_line(capsys, args, str(tmp_path), "--out", "no space left on the device")
    assert not [p for p in tmp_path.rglob(".*.tmp*")]  # no temporary file left behind


def test_emit_out_is_a_directory(capsys, tmp_path, plan_dir):
    (tmp_path / "d.sh").mkdir()
    one_error_line(
        capsys, ["emit", plan_dir / "plan.yaml", "--out", tmp_path / "d.sh"], "d.sh", "--out", "directory"
    )


def test_search_storage_under_a_file(capsys, tmp_path):
    blocker = file_in_the_way(tmp_path)
    url = f"sqlite:///{blocker}/study.db"
    one_error_line(capsys, [*SEARCH, "--storage", url, "--out", tmp_path / "r"], str(blocker), "--storage")


# ---- --seed ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", ["-1", str(2**32), str(10**30)])
def test_search_seed_out_of_range(capsys, tmp_path, seed):
    one_error_line(capsys, [*SEARCH, "--seed", seed, "--out", tmp_path], "--seed", seed, "0<=x<=4294967295")


@pytest.mark.parametrize("seed", ["-5", str(2**32)])
def test_sweep_seed_out_of_range(capsys, tmp_path, seed):
    one_error_line(
        capsys, ["sweep", "tiny", "--seed", seed, "--out", tmp_path], "--seed", seed, "0<=x<=4294967295"
    )


def test_joining_worker_with_the_largest_seed_does_not_overflow(capsys, tmp_path):
    """The second run joins the study: its sampler seed is seed + pid, reduced mod 2**32."""
    from tests.cli_helpers import run

    args = [*SEARCH, "--seed", str(2**32 - 1), "--out", tmp_path]
    assert run(capsys, *args)[0] == 0
    again = [*SEARCH[:-1], "5", "--seed", str(2**32 - 1), "--out", tmp_path]  # 5 trials: it runs 2 more
    rc, _, err = run(capsys, *again)
    assert rc == 0 and "Traceback" not in err


# ---- estimate allreduce --bytes ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "why"),
    [
        ("1.5", "not a whole number of bytes"),
        ("0.5", "less than one byte"),
        ("1.0001KB", "not a whole number of bytes"),
        ("0", "less than one byte"),
        ("2TiB", "larger than one all-reduce message"),
        ("10000000000GiB", "larger than one all-reduce message"),
        ("1e29GiB", "not a size"),
        ("-1", "not a size"),
        ("12 parsecs", "not a size"),
    ],
)
def test_allreduce_bytes_out_of_range(capsys, size, why):
    args = ["estimate", "allreduce", "--profile", "dgx-h100", "--ranks", "8", "--bytes", size]
    one_error_line(capsys, args, "--bytes", repr(size), why, "expected a whole byte count from 1")


def test_allreduce_bytes_with_a_fraction_of_a_unit_that_is_whole(capsys):
    from tests.cli_helpers import run

    rc, out, _ = run(
        capsys,
        "estimate",
        "allreduce",
        "--profile",
        "dgx-h100",
        "--ranks",
        "8",
        "--bytes",
        "1.5KiB",
        "--json",
    )
    assert rc == 0 and '"bytes": 1536' in out


# ---- calibration values -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "column"),
    [
        ("  9140.50", "      nan", "out-of-place time"),
        ("  9140.50", "      inf", "out-of-place time"),
        ("8702.14", "   -inf", "in-place time"),
        ("8702.14", "    NaN", "in-place time"),
    ],
)
def test_nccl_tests_non_finite_time(capsys, tmp_path, old, new, column):
    src = nccl_with(tmp_path, old, new)
    one_error_line(
        capsys,
        ["calibrate", src, "--profile", "dgx-a100-80g", "--out", tmp_path / "p.yaml"],
        str(src),
        "line 43",
        column,
        new.strip().lower(),
        "expected a finite measured value",
    )


@pytest.mark.parametrize(
    ("changes", "column", "shown", "valid"),
    [
        ({"ttft": "nan"}, "silicon_ttft_ms", "nan", "finite"),
        ({"tpot": "inf"}, "silicon_tpot_ms", "inf", "finite"),
        ({"tpot": "0"}, "silicon_tpot_ms", "0 is not positive", "> 0"),
        ({"ttft": "-3"}, "silicon_ttft_ms", "-3 is not positive", "> 0"),
        ({"batch": "0"}, "batch_size", "0 is not positive", "> 0"),
    ],
)
def test_serving_points_non_finite_or_non_positive(capsys, tmp_path, changes, column, shown, valid):
    src = serving_csv(tmp_path, **changes)
    one_error_line(
        capsys,
        ["calibrate", src, "--profile", "dgx-h100", "--out", tmp_path / "p.yaml"],
        str(src),
        "line 3",
        f"column {column}",
        shown,
        valid,
    )


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_sweep_results_non_finite_step(capsys, tmp_path, value):
    src = sweep_jsonl_with(tmp_path, p50=value)
    one_error_line(
        capsys,
        ["calibrate", src, "--profile", "cpu-local", "--out", tmp_path / "p.yaml"],
        str(src),
        "line 1",
        "step_ms.p50",
        "not a finite number",
    )


# ---- input caps: size, depth, alias expansion, and values truncated before rendering ---------------------
def _child_one_line(done, *needles):
    assert done.returncode != 0, done.stdout
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("where", ["model", "profile", "plan"])
def test_alias_bomb_is_refused_in_bounded_time_and_memory(tmp_path, where):
    bomb = yaml_file(tmp_path, "bomb.yaml", alias_bomb())
    args = {
        "model": ["candidates", bomb, "--profile", "dgx-h100"],
        "profile": ["candidates", "tiny", "--profile", bomb],
        "plan": ["emit", bomb],
    }[where]
    _child_one_line(limited_cli(args, timeout_s=15), str(bomb), "more than 200,000 values", "aliases")


def test_alias_bomb_inside_a_model_field_is_refused(tmp_path):
    text = alias_bomb() + "name: m\nnum_layers: *l8\n"
    bomb = yaml_file(tmp_path, "m.yaml", text)
    _child_one_line(limited_cli(["candidates", bomb, "--profile", "dgx-h100"]), str(bomb), "aliases")


@pytest.mark.parametrize("builder", ["yaml", "json", "yaml-mapping"])
def test_100k_deep_nesting(capsys, tmp_path, builder):
    if builder == "json":
        p = yaml_file(tmp_path, "deep.json", deep_json(100_000))
    elif builder == "yaml":
        p = yaml_file(tmp_path, "deep.yaml", deep_yaml(100_000))
    else:
        p = yaml_file(tmp_path, "deep.yaml", "a: " + "{b: " * 100_000 + "1" + "}" * 100_000 + "\n")
    one_error_line(capsys, ["candidates", p, "--profile", "dgx-h100"], str(p), "deeper than 100 levels")


def test_50_mb_file_is_refused_without_reading_it(tmp_path):
    p = tmp_path / "huge.yaml"
    with p.open("wb") as f:
        f.truncate(50 * 2**20)  # sparse: nothing on disk
    _child_one_line(limited_cli(["candidates", p, "--profile", "dgx-h100"]), str(p), "larger than 1 MiB")


def test_an_endless_device_is_read_only_up_to_the_cap(tmp_path):
    _child_one_line(
        limited_cli(["calibrate", "/dev/zero", "--profile", "cpu-local"]), "/dev/zero", "larger than 16 MiB"
    )


@pytest.mark.parametrize("flow", [True, False])
def test_a_long_list_is_refused(capsys, tmp_path, flow):
    n = 250_000  # under the 1 MiB cap either way
    text = "a: [" + "1," * n + "]\n" if flow else "a:\n" + "- 1\n" * n
    p = yaml_file(tmp_path, "long.yaml", text)
    one_error_line(capsys, ["candidates", p, "--profile", "dgx-h100"], str(p), "more than 200,000 values")


def test_a_recursive_alias(capsys, tmp_path):
    p = yaml_file(tmp_path, "rec.yaml", "name: &a [*a]\nnum_layers: 2\n")
    one_error_line(capsys, ["candidates", p, "--profile", "dgx-h100"], str(p), "recursive alias")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_layers", "x" * 200_000),
        ("num_layers", list(range(100_000))),
        ("hidden_size", {f"k{i}": i for i in range(30_000)}),
    ],
)
def test_a_huge_bad_value_is_shown_truncated(capsys, tmp_path, field, value):
    from tests.test_bad_inputs import GOOD_MODEL

    p = yaml_file(tmp_path, "m.yaml", {**GOOD_MODEL, field: value})
    line = one_error_line(capsys, ["candidates", p, "--profile", "dgx-h100"], str(p), field)
    assert "..." in line or isinstance(value, dict)  # a mapping is not rendered at all


def test_a_huge_bad_value_expanded_from_aliases_is_shown_truncated(capsys, tmp_path):
    """~22k values from aliases (under the cap): the error renders a capped repr, not the value."""
    from tests.test_bad_inputs import GOOD_MODEL

    body = yaml_file(
        tmp_path, "x.yaml", {k: v for k, v in GOOD_MODEL.items() if k != "num_layers"}
    ).read_text()
    text = alias_bomb(levels=4, fan=10) + body + "num_layers: *l3\n"
    p = yaml_file(tmp_path, "m.yaml", text)
    one_error_line(capsys, ["candidates", p, "--profile", "dgx-h100"], str(p), "num_layers", "...")
