"""scripts/fit_defaults.py reproduces the efficiency sections shipped in hardware_profiles/."""

from __future__ import annotations

import importlib.util
import math

import pytest

from tpplan import io


def _script(repo):
    spec = importlib.util.spec_from_file_location("fit_defaults", repo / "scripts" / "fit_defaults.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _numbers(data, path=""):
    """Flatten a dumped efficiency section into {path: value}."""
    if isinstance(data, dict):
        return {k: v for key, val in data.items() for k, v in _numbers(val, f"{path}.{key}").items()}
    if isinstance(data, list):
        return {k: v for i, val in enumerate(data) for k, v in _numbers(val, f"{path}[{i}]").items()}
    return {path: data}


@pytest.mark.parametrize("name", ["dgx-a100-80g", "dgx-h100"])
def test_refit_reproduces_the_shipped_efficiency(name, reference, repo):
    fit = _script(repo).fit_profile(name, reference.parent)
    shipped = io.load_profile(name).efficiency
    assert shipped is not None
    got, want = _numbers(fit.efficiency.model_dump(mode="json")), _numbers(shipped.model_dump(mode="json"))
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, float):
            assert math.isclose(got[key], value, rel_tol=2e-3, abs_tol=1e-9), key
        else:
            assert got[key] == value, key
