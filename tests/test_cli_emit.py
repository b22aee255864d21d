"""`tpplan emit` as a user runs it: plan files in, scripts out, one-line errors."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from click.testing import CliRunner
from emit_helpers import argv_of, make_plan

from tpplan import io
from tpplan.cli import cli


@pytest.fixture
def plan_file(tmp_path):
    path = tmp_path / "plan.yaml"
    io.write_text(path, io.to_yaml(make_plan(tp=8, pp=2, model_path="meta-llama/Llama-3.1-70B-Instruct")))
    return path


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def test_emit_for_all_three_engines(plan_file):
    for engine, program in (("vllm", "vllm"), ("megatron", "torchrun"), ("sglang", "python")):
        result = run("emit", plan_file, "--engine", engine)
        assert result.exit_code == 0, result.output
        argvs = argv_of(result.output)
        assert len(argvs) == 2 and all(program in argv for argv in argvs)


def test_json_plan_and_json_output(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(make_plan(tp=4, replicas=2).model_dump_json())
    result = run("emit", path, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["launch"]["engine"] == "vllm" and len(data["launch"]["processes"]) == 2
    assert data["text"].startswith("#!/usr/bin/env bash")


def test_out_files(tmp_path, plan_file):
    script = tmp_path / "launch.sh"
    assert run("emit", plan_file, "--out", script).exit_code == 0
    assert os.access(script, os.X_OK) and "vllm serve" in script.read_text()
    config = tmp_path / "vllm.yaml"
    result = run("emit", plan_file, "--format", "yaml", "--out", config, "--node-addrs", "10.0.0.1,10.0.0.2")
    assert result.exit_code == 0, result.output
    text = config.read_text()
    assert yaml.safe_load(text)["tensor-parallel-size"] == 8 and f"--config {config}" in text


@pytest.mark.parametrize(
    "args,message",
    [
        (["--format", "yaml", "--out", "x.txt"], "must end in .yaml"),
        (["--engine", "megatron", "--format", "yaml"], "--format"),
        (["--node-addrs", "10.0.0.1,"], "empty address"),
        (["--node-addrs", "10.0.0.1"], "1 node address(es) given for a deployment of 2 nodes"),
        (["--port", "0"], "--port"),
        (["--engine", "megatron", "--port", "70000"], "ports 70000-70000"),
    ],
)
def test_bad_input_is_one_line(plan_file, args, message):
    result = run("emit", plan_file, *args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output


@pytest.mark.parametrize("content", ["", "layout: [1, 2]\n", "model: {}\n", ": : :\n"])
def test_bad_plan_files_are_one_line(tmp_path, content):
    path = tmp_path / "plan.yaml"
    path.write_text(content)
    result = run("emit", path)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert str(path) in result.output


def test_model_path_override_and_missing_model_path_note(tmp_path):
    path = tmp_path / "plan.yaml"
    plan = make_plan(tp=8)
    # a bundled spec names its checkpoint: with no model_path, the engine loads that repo id
    io.write_text(path, io.to_yaml(plan))
    result = run("emit", path)
    assert (
        "meta-llama/Llama-3.1-70B-Instruct" in result.output and "give the Hugging Face" not in result.output
    )
    # a spec without one falls back to the bare name, and says so
    io.write_text(
        path, io.to_yaml(plan.model_copy(update={"model": plan.model.model_copy(update={"hf_id": None})}))
    )
    assert "give the Hugging Face repo id" in run("emit", path).output
    result = run("emit", path, "--model-path", "/models/llama 70b")
    assert "'/models/llama 70b'" in result.output and "give the Hugging Face" not in result.output


def test_fit_warning_when_emitting_for_an_engine_that_may_not_fit(tmp_path):
    path = tmp_path / "plan.yaml"
    io.write_text(path, io.to_yaml(make_plan("llama-3.1-70b", "l40s-8x-pcie", tp=2, model_path="m")))
    result = CliRunner().invoke(cli, ["emit", str(path)])
    assert result.exit_code == 0 and "warning: may not fit" in result.output
