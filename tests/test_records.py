"""Records round-trip through the files stages write."""

from __future__ import annotations

import json

import pytest
import yaml
from emit_helpers import make_plan

from tpplan import io
from tpplan.errors import ConfigError
from tpplan.records import Layout, Plan


def test_plan_round_trips_through_yaml_and_json(tmp_path):
    plan = make_plan(tp=4, pp=2, replicas=2, kv_cache_dtype="fp8", memory_fraction=0.9, model_path="org/m")
    (tmp_path / "p.yaml").write_text(io.to_yaml(plan))
    (tmp_path / "p.json").write_text(plan.model_dump_json())
    assert io.load_plan(tmp_path / "p.yaml") == plan == io.load_plan(tmp_path / "p.json")


def test_layout_derived_fields_must_agree():
    assert Layout.model_validate({"tp": 2, "pp": 2, "replicas": 3, "world_size": 4, "gpus": 12}) == Layout(
        tp=2, pp=2, replicas=3
    )
    data = yaml.safe_load(io.to_yaml(make_plan(tp=8)))
    data["layout"]["world_size"] = 4
    with pytest.raises(ConfigError, match=r"layout: world_size \(4\) disagrees with tp × pp \(8\)"):
        io.validate(Plan, data, file="plan.yaml")
    data = json.loads(make_plan(tp=8).model_dump_json())
    data["layout"]["tp"] = "8"
    with pytest.raises(ConfigError, match="layout.tp"):
        io.validate(Plan, data, file="plan.json")


def test_detection_fallback_line_names_gpus_nvml_could_not_read():
    from tpplan.records.costmodel import Detection

    profile = io.load_profile("cpu-local")
    none = Detection(profile=profile, gpu_found=False, fallback_reason="NVML Shared Library Not Found")
    assert none.fallback_line() == "no NVIDIA GPU found: NVML Shared Library Not Found"
    present = none.model_copy(
        update={"gpus_present": ["/dev/nvidia0"], "fallback_reason": "Driver Not Loaded"}
    )
    assert present.fallback_line() == (
        "NVIDIA GPUs present (/dev/nvidia0) but NVML cannot read them: Driver Not Loaded"
    )
