"""`tpplan report` on real runs: the demo's (a real sweep and a real Optuna search), a sweep with a failed
case and no search, and a detected GPU topology (fake NVML). Every figure is checked against the records
it was drawn from, not only for existing."""

from __future__ import annotations

import json
import math
import re
import shutil
import statistics
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner
from fakes import FIXTURES, load_fixture

from tpplan import api, io
from tpplan.cli import cli
from tpplan.sweep import read_results

FIGURES = ["allreduce", "busy", "breakdown", "drift", "pareto", "topology"]


@pytest.fixture(scope="module")
def demo_report(demo_run, tmp_path_factory):
    """The demo's run directory, reported again into a directory of its own (md, html, CSV)."""
    run_dir, _ = demo_run
    out = tmp_path_factory.mktemp("report")
    return run_dir, out, api.report(run_dir, out=out, formats=("md", "html"), csv=True, echo=lambda _: None)


def series(report, figure: str) -> dict:
    fig = next(f for f in report.figures if f.name == figure)
    return {s.label: s for s in fig.series}


def test_every_figure_is_drawn_with_units_and_a_caption(demo_report):
    _, out, report = demo_report
    assert [f.name for f in report.figures] == FIGURES
    # The demo runs no engine, so the only thing missing is the bench, and the report says how to get it.
    assert len(report.missing) == 1 and report.missing[0].startswith("no bench in this run: `tpplan bench")
    for f in report.figures:
        assert f.series and all(s.y for s in f.series), f.name
        assert all(math.isfinite(v) for s in f.series for v in (*s.x, *s.y)), f.name
        assert "(" in f.x_label + f.y_label and f.caption.endswith(".") and "\n" not in f.caption
        png = (out / f.file).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_sweep_figures_plot_the_measurements(demo_report):
    run_dir, _, report = demo_report
    ms = [m for m in read_results(run_dir / "sweep" / "results.jsonl") if m.status == "ok"]
    ar = series(report, "allreduce")
    for tp in {m.tp for m in ms if m.tp > 1}:
        at_tp = sorted((m for m in ms if m.tp == tp), key=lambda m: m.allreduce.bytes)
        got = ar[f"TP={tp} measured latency p50"]
        assert got.x == [m.allreduce.bytes for m in at_tp]
        assert got.y == [m.allreduce.latency_us.p50 for m in at_tp]
        model = ar[f"TP={tp} cost model latency"]  # the cost model on cpu-local, the demo sweep's profile
        assert model.source == "modelled" and len(model.y) > 10
        assert model.y[0] == api.estimate_allreduce("cpu-local", nbytes=int(model.x[0]), ranks=tp).latency_us
    busy = series(report, "busy")
    uneven = next(m for m in ms if m.heads_mode == "uneven")  # the demo's 3/3/2 heads at TP=3
    assert busy[f"TP3 {uneven.dtype} uneven busy fraction by rank"].y == [
        r.busy_ms(uneven.representative) / uneven.step_ms.p50 for r in uneven.ranks
    ]
    measured = {s.label: s for s in series(report, "breakdown").values() if s.source == "measured"}
    assert measured["measured compute"].y[0] == statistics.median(r.compute_ms for r in ms[0].ranks)
    drift = series(report, "drift")
    cases = sorted((m for m in ms if m.tp > 1), key=lambda m: (m.dtype, m.tp, m.heads_mode))
    assert drift["tolerance ratio by case"].y == [m.drift.tolerance_ratio for m in cases]
    assert drift["allclose bound"].y == [1.0, 1.0]
    assert all((m.drift.tolerance_ratio <= 1) == m.drift.allclose for m in cases)


def test_drift_of_results_written_before_the_tolerance_ratio_falls_back_to_max_rel(demo_run, tmp_path):
    from tpplan.api.report import read_run
    from tpplan.report import figures_sweep

    run_dir, _ = demo_run
    lines = [json.loads(line) for line in (run_dir / "sweep" / "results.jsonl").read_text().splitlines()]
    for line in lines:
        if line.get("drift"):
            del line["drift"]["tolerance_ratio"]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    data = read_run(tmp_path)
    drawn = figures_sweep.drift(data).data
    got = {s.label: s for s in drawn.series}
    cases = sorted((m for m in data.ok if m.tp > 1), key=lambda m: (m.dtype, m.tp, m.heads_mode))
    assert got["max_rel by case"].y == [m.drift.max_rel for m in cases]
    # one rtol line per dtype's tolerance (bf16 and fp32 differ since issue 12)
    rtols = {s.y[0] for label, s in got.items() if label.startswith("rtol")}
    assert rtols == {m.drift.rtol for m in cases}
    assert "written before the sweep recorded tolerance_ratio" in drawn.caption


def test_busy_labels_are_the_spread_of_the_bars_they_sit_on(demo_run):
    """Each "imbalance X%" drawn over a layout's bars is (max − min) / max of those bars, and that is
    the sweep's imbalance_pct (a label computed from other numbers than the bars contradicts them)."""
    from tpplan.api.report import read_run
    from tpplan.report import figures_sweep

    run_dir, _ = demo_run
    data = read_run(run_dir)
    drawn = figures_sweep.busy(data)
    bars = [s for s in drawn.data.series if s.label.endswith("busy fraction by rank")]
    notes = [
        t.get_text()
        for t in drawn.figure.axes[0].texts
        if "imbalance" in t.get_text() or t.get_text() == "one rank"
    ]
    measured = [m for m in data.ok if m.ranks]
    assert len(bars) == len(notes) == len(measured) and any(m.tp > 1 for m in measured)
    for m, bar, note in zip(measured, bars, notes, strict=True):
        if m.tp == 1:
            assert note == "one rank"
            continue
        shown = float(re.search(r"imbalance ([0-9.]+)%", note).group(1))
        assert shown == pytest.approx(100 * (max(bar.y) - min(bar.y)) / max(bar.y), abs=0.05)
        assert shown == pytest.approx(m.imbalance_pct, abs=0.05)
        assert ("CPU time" in note) == (not m.representative)


def test_breakdown_names_each_workload_and_shows_every_bar_whole(demo_run):
    """The demo's estimates.json and its plan are priced at different workloads: a bar of the same
    layout under each differs, so the figure must say which workload each bar is (series, caption)."""
    from tpplan.api.report import read_run
    from tpplan.report import figures_step

    run_dir, _ = demo_run
    data = read_run(run_dir)
    e, plan = data.estimates[0], data.winner_estimate
    assert (e.input_tokens, e.concurrency) != (plan.input_tokens, plan.concurrency)
    drawn = figures_step.breakdown(data)
    for w in (e, plan):
        shown = f"ISL {w.input_tokens}, OSL {w.output_tokens}, {w.concurrency} in flight"
        assert shown in drawn.data.caption
        assert any(s.label.startswith("modelled") and shown in s.label for s in drawn.data.series)
    plan_bars = [s for s in drawn.data.series if "plan (hatched)" in s.label]
    assert plan_bars and all(f"ISL {plan.input_tokens}," in s.label for s in plan_bars)
    assert [s.y[0] for s in plan_bars if s.label.startswith("modelled compute")] == [
        plan.breakdown.compute_ms
    ]
    for ax in drawn.figure.axes:  # no stack is cut off by the top of its axis
        tallest = max(b.get_y() + b.get_height() for b in ax.patches)
        assert ax.get_ylim()[1] > tallest


def test_search_and_topology_figures_show_the_winner(demo_report):
    run_dir, _, report = demo_report
    plan = io.load_plan(run_dir / "plan.yaml")
    pareto = series(report, "pareto")
    assert pareto["winner"].x == [plan.estimate.tpot_ms] and pareto["winner"].y == [
        plan.estimate.output_tokens_per_usd
    ]
    assert pareto["TPOT SLO"].x == [plan.workload.slo_tpot_ms]
    trials = sum(len(s.x) for label, s in pareto.items() if label.startswith(("feasible", "infeasible")))
    assert trials >= 10  # every setup of the demo's study, each at its solved max_num_seqs
    front = pareto["Pareto front"]
    assert front.y == sorted(front.y)
    # the winner tops the front, or is tied with what does (inside its interval) and the caption says so
    leader = max(front.y)
    caption = next(f.caption for f in report.figures if f.name == "pareto")
    more = [y for s in pareto.values() if s.label.startswith("feasible") for y in s.y]
    more = [y for y in more if y > plan.estimate.output_tokens_per_usd]
    if more:  # a tie the winner took: counted, and the winner inside the interval of the most
        assert (
            leader == max(more) and f"{len(more)} of the study's feasible configurations earn more" in caption
        )
        assert "the winner inside the estimates' uncertainty of the most" in caption
    else:
        assert leader == plan.estimate.output_tokens_per_usd
    topo = series(report, "topology")
    groups = [s for label, s in topo.items() if label.endswith("TP group")]
    assert len(groups) == plan.layout.replicas * plan.layout.pp
    assert all(len(g.x) == plan.layout.tp for g in groups)
    domains = [s for label, s in topo.items() if label.startswith("domain")]
    assert {len(d.x) for d in domains} == {plan.profile.domain_size}


def test_verdict_says_who_won_and_why(demo_report):
    run_dir, out, report = demo_report
    plan = io.load_plan(run_dir / "plan.yaml")
    e = plan.estimate
    md = (out / "report.md").read_text()
    verdict = md.split("## Verdict")[1].split("\n## ")[0]
    assert f"Winner: TP={e.tp} PP={e.pp} x{e.replicas}" in verdict
    assert f"{e.output_tokens_per_usd:,.0f} output tokens per USD" in verdict
    assert f"TPOT {e.tpot_ms:,.1f} ms against an SLO of {plan.workload.slo_tpot_ms:g} ms" in verdict
    assert f"Basis: {e.basis}" in verdict and "TTFT" in verdict
    assert plan.why and all(s in verdict for s in plan.why)
    for f in report.figures:
        assert f"![{f.title}]({f.file})" in md and f.caption in md


def test_html_is_one_self_contained_file(demo_report):
    _, out, report = demo_report
    page = (out / "report.html").read_text()
    sources = re.findall(r"src='([^']*)'", page) + re.findall(r'src="([^"]*)"', page)
    assert len(sources) == len(report.figures) == 6
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in page and "http://" not in page and "https://" not in page.split("<body>")[0]


def test_csv_and_parquet_hold_every_measurement(demo_run, tmp_path):
    run_dir, _ = demo_run
    result = CliRunner().invoke(cli, ["report", str(run_dir), "--csv", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {f["name"] for f in summary["figures"]} == set(FIGURES)
    ms = read_results(run_dir / "sweep" / "results.jsonl")
    for frame in (pd.read_csv(tmp_path / "sweep.csv"), pd.read_parquet(tmp_path / "sweep.parquet")):
        assert list(frame["key"]) == [m.key for m in ms]
        assert list(frame["status"]) == [m.status for m in ms]
        assert frame["step_ms_p50"].tolist() == pytest.approx([m.step_ms.p50 for m in ms])
        assert frame["drift_tolerance_ratio"].tolist() == pytest.approx([m.drift.tolerance_ratio for m in ms])


def test_a_failed_case_no_search_and_a_corrupt_line_still_make_a_report(demo_run, tmp_path):
    """Only a sweep directory: one case timed out, one line is not JSON and the last is cut off mid-write;
    the report says what is missing and what it skipped."""
    run_dir, _ = demo_run
    lines = (run_dir / "sweep" / "results.jsonl").read_text().splitlines()
    failed = json.loads(lines[-1])
    failed.update(
        key=failed["key"] + "/again",
        status="timeout",
        reason="all-reduce did not finish in 60 s",
        step_ms=None,
        step_ms_full_depth=None,
        allreduce=None,
        ranks=[],
        drift=None,
        imbalance_pct=None,
        busy_spread_ms=None,
        tokens_per_s=None,
    )
    cut = lines[0][: len(lines[0]) // 2]  # an interrupted sweep: the last line cut off mid-write, no newline
    (tmp_path / "results.jsonl").write_text("\n".join([*lines, json.dumps(failed), '{"tp": 2, "key"', cut]))
    result = CliRunner().invoke(cli, ["report", str(tmp_path), "--format", "html", "--format", "md"])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "report" / "report.md").read_text()
    assert "no search in this run: run `tpplan search MODEL --profile PROFILE" in md
    assert "timeout: all-reduce did not finish in 60 s" in md and "Failed measurements (1 of" in md
    assert f"results.jsonl: line {len(lines) + 2} is not JSON" in md and "(line skipped)" in md
    notes = md.split("## Notes")[1]
    assert f"results.jsonl:{len(lines) + 3}: the last line is cut off mid-write ({len(cut)} bytes" in notes
    assert "No plan in this run, so no winner" in md and "Fastest measured layout" in md
    for name in ("allreduce", "busy", "breakdown", "drift"):
        assert (tmp_path / "report" / f"{name}.png").exists()
    assert not (tmp_path / "report" / "pareto.png").exists()
    assert "missing: no search in this run" in result.output


def test_detected_gpu_topology_is_drawn_with_its_domains_and_hcas(demo_run, tmp_path, monkeypatch):
    from fakes import sysfs

    run_dir, _ = demo_run
    shutil.copy(run_dir / "plan.yaml", tmp_path / "plan.yaml")
    root = sysfs.build(load_fixture(FIXTURES / "dgx-h100.yaml"), tmp_path / "root")
    monkeypatch.setenv("TPPLAN_FAKE_NVML", str(FIXTURES / "dgx-h100.yaml"))
    monkeypatch.setenv("TPPLAN_SYSFS_ROOT", str(root))
    found = api.detect(tmp_path / "profile.yaml")
    report = api.report(tmp_path, formats=("md",), echo=lambda _: None)
    topo = next(f for f in report.figures if f.name == "topology")
    domains = [s for s in topo.series if s.label.startswith("domain")]
    assert all(s.source == "detected" for s in domains)
    assert sorted(len(d.x) for d in domains[:1]) == [len(found.profile.topology.domains[0])]
    hcas = [s for s in topo.series if "HCAs" in s.label]
    assert hcas and len(hcas[0].x) == sum(len(h.nearest_gpus) for h in found.profile.topology.hcas)
    assert "detected topology" in topo.caption


def test_a_foreign_study_db_is_named_left_untouched_and_its_old_figure_removed(demo_run, tmp_path):
    """Optuna's storage would create its tables in any SQLite file; the report looks read-only first.
    A second report that cannot draw the Pareto front removes the first one's PNG of it."""
    import sqlite3

    run_dir, _ = demo_run
    shutil.copy(run_dir / "plan.yaml", tmp_path / "plan.yaml")
    # through SQLite, not as a file: the demo's study is in WAL mode and its last commits may still
    # sit in study.db-wal while this process holds the storage open
    src, dst = sqlite3.connect(run_dir / "study.db"), sqlite3.connect(tmp_path / "study.db")
    src.backup(dst)
    src.close()
    dst.close()
    api.report(tmp_path, formats=("md",), echo=lambda _: None)
    assert (tmp_path / "report" / "pareto.png").exists()
    (tmp_path / "study.db").unlink()
    with sqlite3.connect(tmp_path / "study.db") as db:
        db.execute("CREATE TABLE mine (a)")
    before = (tmp_path / "study.db").read_bytes()
    report = api.report(tmp_path, formats=("md",), echo=lambda _: None)
    assert (tmp_path / "study.db").read_bytes() == before
    assert any("without Optuna's tables" in m for m in report.missing)
    assert not (tmp_path / "report" / "pareto.png").exists()


def test_a_missing_or_foreign_run_dir_is_one_line(tmp_path):
    for target in (tmp_path / "nope", tmp_path):
        result = subprocess.run(
            [sys.executable, "-m", "tpplan", "report", str(target)], capture_output=True, text=True
        )
        assert result.returncode == 2
        assert (
            result.stderr.count("\n") == 1
            and str(target) in result.stderr
            and "Traceback" not in result.stderr
        )


def test_importing_the_facade_does_not_load_matplotlib_or_pandas():
    code = "import sys, tpplan.api, tpplan.api.report; print(sorted({'matplotlib', 'pandas'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"
