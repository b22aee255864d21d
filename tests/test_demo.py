"""The demo's steps end to end: a searched plan in the run dir, the vLLM script made from it, and the
report of the run."""

from __future__ import annotations

from emit_helpers import argv_of

from tpplan import demo, io


def test_plan_then_emit_steps(demo_run):
    out, lines = demo_run
    plan = io.load_plan(out / "plan.yaml")
    assert plan.engine == "vllm" and plan.layout.gpus <= demo.DEMO_GPUS
    assert plan.estimate is not None and plan.estimate.feasible  # chosen by the search, not a stand-in
    assert plan.estimate.tpot_ms <= demo.DEMO_SEARCH["slo_tpot_ms"]
    argvs = [a for a in argv_of((out / "launch-vllm.sh").read_text()) if "vllm" in a]  # not the router
    assert argvs and all(argv[argv.index("vllm") + 2] == demo.DEMO_MODEL_PATH for argv in argvs)
    tp = [int(a[a.index("--tensor-parallel-size") + 1]) for a in argvs]
    assert set(tp) == {plan.layout.tp} | ({plan.prefill.tp} if plan.prefill else set())
    assert any("vllm serve" in line for line in lines)


def test_the_last_step_writes_the_report_of_the_run(demo_run):
    out, lines = demo_run
    assert demo.STEPS[-1][1] is demo.step_report
    n = len(demo.STEPS)
    assert any(line.strip().startswith(f"[{n}/{n}] report") for line in lines)
    for name in ("report.md", "report.html", "sweep.csv", "sweep.parquet", "pareto.png", "topology.png"):
        assert (out / "report" / name).stat().st_size > 0
    assert any(line.startswith("  Verdict: Winner: TP=") for line in lines)


def test_the_output_ends_with_the_plan_and_its_launch_command(demo_run):
    """The report is the last step, but the last thing printed is the answer: the command to run."""
    out, lines = demo_run
    first = argv_of((out / "launch-vllm.sh").read_text())[0]
    assert argv_of(lines[-1].strip()) == [first]
    assert "vllm" in first and lines[-2].startswith("Launch (first of")
    plan = io.load_plan(out / "plan.yaml")
    assert any(line.lstrip().startswith("Plan: ") and plan.layout.label() in line for line in lines[-6:])
