"""MODEL as a Hugging Face repo id: a bundled spec's id or alias, or a config in the local HF cache."""

from __future__ import annotations

import json

import pytest
from hf_configs import DSV3

from tpplan import hub, io
from tpplan.errors import ConfigError


def test_bundled_alias_loads_the_bundled_shape_and_keeps_the_id_given():
    spec = io.load_model("meta-llama/Meta-Llama-3.1-70B")  # an alias of the bundled llama-3.1-70b
    bundled = io.load_model("llama-3.1-70b")
    assert (
        spec.hf_id == "meta-llama/Meta-Llama-3.1-70B" and bundled.hf_id == "meta-llama/Llama-3.1-70B-Instruct"
    )
    assert (spec.num_layers, spec.hidden_size) == (bundled.num_layers, bundled.hidden_size)
    assert io.load_model("qwen/qwen3-32b").name == "Qwen3-32B"  # the Hub matches ids without case


def _cache(root, repo: str, rev: str, config: dict) -> None:
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    snap = repo_dir / "snapshots" / rev
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(config))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(rev)


def test_repo_in_the_hf_cache_is_read_at_the_revision_refs_main_names(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    _cache(tmp_path, "acme/ds-like", "aaa", {**DSV3, "num_hidden_layers": 7})
    _cache(tmp_path, "acme/ds-like", "bbb", {**DSV3, "num_hidden_layers": 9})
    (tmp_path / "models--acme--ds-like" / "refs" / "main").write_text("aaa")
    spec = io.load_model("acme/ds-like")
    assert spec.num_layers == 7 and spec.hf_id == "acme/ds-like"


def test_unknown_repo_says_it_never_downloads_and_lists_the_bundled_ids(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ConfigError) as e:
        io.load_model("acme/unknown-7b")
    text = str(e.value)
    assert "never downloads" in text and "Qwen/Qwen3-32B" in text and str(tmp_path) in text


def test_a_mistyped_path_stays_a_missing_file_not_a_repo_id():
    with pytest.raises(ConfigError, match="no such file"):
        io.load_model("sweeps/llama-3.1-70.yaml")


def test_cache_dir_follows_the_hub_environment(tmp_path):
    assert hub.cache_dir({"HF_HUB_CACHE": "/x"}).as_posix() == "/x"
    assert hub.cache_dir({"HF_HOME": "/h"}).as_posix() == "/h/hub"
    assert hub.cache_dir({}).as_posix().endswith(".cache/huggingface/hub")
