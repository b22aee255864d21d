"""results.jsonl: appended line by line, refused without --resume, repaired after a crash mid-write."""

from __future__ import annotations

import pytest

from tests.sweep_helpers import small_settings
from tpplan.errors import ConfigError
from tpplan.sweep.cases import Case
from tpplan.sweep.collect import failure
from tpplan.sweep.results import ResultsFile, read_results

SETTINGS = small_settings(warmup=0, iters=1)


def result(key: str):
    c = Case(key=key, tp=2, pp=1, replicas=1, dtype="fp32", heads_mode="even", engines_accepting=[])
    return failure(SETTINGS, c, status="timeout", reason="rank 1 never answered", ranks_per_core=1.0)


def test_lines_are_on_disk_as_soon_as_appended(tmp_path):
    f = ResultsFile(tmp_path, resume=False)
    f.append(result("a"))
    assert [m.key for m in read_results(tmp_path / "results.jsonl")] == ["a"]  # before close
    f.append(result("b"))
    f.close()
    assert [m.reason for m in read_results(tmp_path / "results.jsonl")] == ["rank 1 never answered"] * 2


def test_an_existing_sweep_needs_resume(tmp_path):
    f = ResultsFile(tmp_path, resume=False)
    f.append(result("a"))
    f.close()
    with pytest.raises(ConfigError, match="already holds 1 results; expected --resume"):
        ResultsFile(tmp_path, resume=False)
    again = ResultsFile(tmp_path, resume=True)
    assert again.keys == {"a"}
    again.close()


def test_resume_trims_a_line_cut_off_mid_write(tmp_path, capsys):
    path = tmp_path / "results.jsonl"
    whole = result("a").model_dump_json() + "\n"
    path.write_text(whole + result("b").model_dump_json()[:40])
    f = ResultsFile(tmp_path, resume=True)
    f.append(result("b"))
    f.close()
    assert [m.key for m in read_results(path)] == ["a", "b"]
    assert "cut off mid-write" in capsys.readouterr().err


def test_a_corrupt_line_is_named(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(result("a").model_dump_json() + "\n{not json\n")
    with pytest.raises(ConfigError, match=r"results.jsonl: line 2 is not JSON"):
        read_results(path)
    path.write_text('{"tp": 2}\n')
    with pytest.raises(ConfigError, match=r"results.jsonl:1"):
        read_results(path)
