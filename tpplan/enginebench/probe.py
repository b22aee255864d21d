"""Which engine a python runs: its version and whether it serves on a GPU, asked of that python.

`make engine` writes ENGINE_PYTHON=... to $TPPLAN_ENGINE_HOME/engine.env (default
~/.cache/tpplan/engine); `--engine-python` names another (a GPU node's own vLLM or SGLang).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..errors import ConfigError
from .runner import EngineEnv

ENGINE_HOME_ENV = "TPPLAN_ENGINE_HOME"
PROBE_TIMEOUT_S = 180  # importing vLLM takes ~10 s on a quiet machine; much longer on a busy one
_MODULE = {"vllm": "vllm", "sglang": "sglang"}


def engine_home() -> Path:
    return Path(os.environ.get(ENGINE_HOME_ENV) or Path.home() / ".cache" / "tpplan" / "engine")


def built_engine() -> dict[str, str]:
    """engine.env of the engine `make engine` built here ({} when none was)."""
    path = engine_home() / "engine.env"
    if not path.is_file():
        return {}
    pairs = (ln.split("=", 1) for ln in path.read_text().splitlines() if "=" in ln)
    return {k.strip(): v.strip() for k, v in pairs}


def probe(engine: str, python: str | None, *, model_path: str) -> EngineEnv:
    """The engine behind `python` (default: the one `make engine` built), asked of it directly."""
    python = python or built_engine().get("ENGINE_PYTHON")
    if not python:
        raise ConfigError(
            "no engine to run",
            field="engine_python",
            expected=f"a python that can import {engine}; `make engine` builds one in {engine_home()}",
        )
    exe = Path(python)
    if not exe.is_file():
        raise ConfigError(
            "does not exist", field="engine_python", value=python, expected="a python executable"
        )
    code = f"import {_MODULE[engine]} as m, torch; print(m.__version__); print(torch.cuda.is_available())"
    try:
        res = subprocess.run([str(exe), "-c", code], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ConfigError(
            f"took over {PROBE_TIMEOUT_S} s to import {engine}", field="engine_python", value=python
        ) from None
    lines = res.stdout.split()
    if res.returncode != 0 or len(lines) < 2:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise ConfigError(
            f"cannot import {engine} ({last})",
            field="engine_python",
            value=python,
            expected=f"a python with {engine} installed (`make engine` for vLLM on CPU)",
        )
    # The venv's bin dir holds `vllm` and `python`; keep the symlink's dir (a venv's python links out).
    bin_dir = exe.parent if exe.parent.joinpath("python").exists() else exe.resolve().parent
    return EngineEnv(engine, bin_dir, lines[-2], "gpu" if lines[-1] == "True" else "cpu", model_path)
