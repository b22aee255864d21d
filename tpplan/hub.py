"""A Hugging Face repo id (`meta-llama/Llama-3.1-70B-Instruct`) as MODEL: found locally, never downloaded.

A repo id names a checkpoint; tpplan needs its shape. Two local places hold it: a bundled model spec
whose `hf_id` or `hf_aliases` name the repo, or the Hugging Face cache a previous `huggingface-cli
download` / `vllm serve` filled (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`;
layout `models--ORG--NAME/snapshots/REV/config.json`, with `refs/main` naming the current REV).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from . import bundled
from .specs.model import HF_REPO_ID_PATTERN


def is_repo_id(ref: str) -> bool:
    return re.fullmatch(HF_REPO_ID_PATTERN, ref) is not None


def cache_dir(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"])
    home = Path(env["HF_HOME"]) if env.get("HF_HOME") else Path.home() / ".cache" / "huggingface"
    return home / "hub"


def _bundled_specs() -> list[tuple[Path, dict]]:
    specs = []
    for name in bundled.bundled_names(bundled.MODELS):
        path = bundled.find_bundled(bundled.MODELS, name)
        data = yaml.safe_load(path.read_text(encoding="utf-8")) if path else None
        if isinstance(data, dict):
            specs.append((path, data))
    return specs


def bundled_ids() -> dict[str, Path]:
    """Every repo id a bundled spec answers to (lower-cased, as the Hub matches them) -> its file."""
    found: dict[str, Path] = {}
    for path, data in _bundled_specs():
        for repo in [data.get("hf_id"), *(data.get("hf_aliases") or [])]:
            if isinstance(repo, str):
                found[repo.lower()] = path
    return found


def bundled_defaults() -> list[str]:
    """The repo id each bundled spec serves by default."""
    return [data["hf_id"] for _, data in _bundled_specs() if isinstance(data.get("hf_id"), str)]


def cached_config(repo_id: str, env: dict[str, str] | None = None) -> Path | None:
    """config.json of `repo_id` in the HF cache: the snapshot refs/main names, else the newest one."""
    repo = cache_dir(env) / f"models--{repo_id.replace('/', '--')}"
    ref = repo / "refs" / "main"
    if ref.is_file():
        pinned = repo / "snapshots" / ref.read_text(encoding="utf-8").strip() / "config.json"
        if pinned.is_file():
            return pinned
    configs = sorted((repo / "snapshots").glob("*/config.json"), key=lambda p: p.stat().st_mtime)
    return configs[-1] if configs else None


def find(repo_id: str, env: dict[str, str] | None = None) -> Path | None:
    """Where the shape of `repo_id` lives here: a bundled spec first (sourced), then the HF cache."""
    return bundled_ids().get(repo_id.lower()) or cached_config(repo_id, env)
