"""The command line as a user meets it: entry points, help, JSON shapes, import weight."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.cli_helpers import run
from tests.hf_configs import FOO

CANDIDATE_KEYS = {
    "tp",
    "pp",
    "replicas",
    "gpus",
    "engine_ok",
    "fits",
    "valid",
    "reasons",
    "heads_per_rank",
    "kv_heads_per_rank",
    "layers_per_stage",
    "weights_gib_per_gpu",
    "kv_cache_gib_per_gpu",
    "crosses_nvlink_domain",
}


def test_import_tpplan_does_not_import_torch_or_optuna():
    code = (
        "import sys, tpplan, tpplan.api, tpplan.cli, tpplan.candidates; "
        "print(sorted(m for m in ('torch', 'optuna', 'pandas', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_imports_nothing_heavy():
    code = (
        "import sys; from tpplan.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'optuna', 'pandas', 'pydantic') if m in sys.modules), file=sys.stderr)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stderr.strip() == "[]"
    assert "candidates" in res.stdout and "profiles" in res.stdout


def test_python_dash_m_and_version():
    res = subprocess.run(
        [sys.executable, "-m", "tpplan", "--version"], capture_output=True, text=True, check=True
    )
    assert "tpplan" in res.stdout


def test_every_command_has_help_with_examples(capsys):
    from tpplan.cli import cli

    for name in cli.commands:
        rc, out, _ = run(capsys, name, "--help")
        assert rc == 0 and "Usage:" in out, name
        assert "Example" in out, f"{name} --help has no examples"


def test_profiles_lists_every_required_profile(capsys):
    rc, out, _ = run(capsys, "profiles", "--json")
    names = {p["name"] for p in json.loads(out)}
    assert names >= {
        "dgx-a100-80g",
        "dgx-h100",
        "hgx-h200",
        "hgx-b200",
        "gb200-nvl72",
        "l40s-8x-pcie",
        "a10g-4x-pcie",
        "a100-pcie-8x-nvlink-pairs",
        "cpu-local",
    }
    rc, out, _ = run(capsys, "profiles")
    assert rc == 0 and "dgx-h100" in out


def test_candidates_json_fields(capsys):
    rc, out, _ = run(capsys, "candidates", "llama-3.1-70b", "--profile", "dgx-h100", "--gpus", "16", "--json")
    rows = json.loads(out)
    assert rc == 0 and rows and set(rows[0]) >= CANDIDATE_KEYS
    tp16 = [r for r in rows if r["tp"] == 16]
    assert tp16 and all(r["crosses_nvlink_domain"] for r in tp16)


def test_candidates_table(capsys):
    rc, out, _ = run(capsys, "candidates", "minicpm-2b", "--profile", "dgx-a100-80g", "--tp", "8")
    assert rc == 0
    assert "num_attention_heads (36) is not divisible by tp (8)" in out
    assert "5×4,4×4" in out  # the uneven split the engine refuses


def test_profile_path_and_hf_config_path(capsys, reference, repo):
    cfg = reference / "models" / "hf_configs" / "Qwen2.5-32B-Instruct.json"
    prof = repo / "hardware_profiles" / "dgx-h100.yaml"
    rc, out, _ = run(capsys, "candidates", cfg, "--profile", prof, "--valid-only", "--json")
    assert rc == 0 and all(r["valid"] for r in json.loads(out))


def test_unknown_architecture_warns_and_is_unsupported_for_vllm(capsys, tmp_path):
    cfg = dict(FOO)
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    rc, out, err = run(capsys, "candidates", p, "--profile", "dgx-h100", "--tp", "2", "--pp", "1")
    assert rc == 0 and "warning:" in err and "not one tpplan knows" in err
    assert "not in vLLM 0.33's model registry" in out
