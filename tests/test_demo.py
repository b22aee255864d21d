"""The demo's search and emit steps: a searched plan in the run dir, and the vLLM script made from it."""

from __future__ import annotations

from emit_helpers import argv_of

from tpplan import demo, io


def test_plan_then_emit_steps(tmp_path):
    lines: list[str] = []
    for _, step in demo.STEPS:
        step(tmp_path, lines.append)
    plan = io.load_plan(tmp_path / "plan.yaml")
    assert plan.engine == "vllm" and plan.layout.gpus <= demo.DEMO_GPUS
    assert plan.estimate is not None and plan.estimate.feasible  # chosen by the search, not a stand-in
    assert plan.estimate.tpot_ms <= demo.DEMO_SEARCH["slo_tpot_ms"]
    argvs = argv_of((tmp_path / "launch-vllm.sh").read_text())
    assert argvs and all(argv[argv.index("vllm") + 2] == demo.DEMO_MODEL_PATH for argv in argvs)
    tp = [int(a[a.index("--tensor-parallel-size") + 1]) for a in argvs]
    assert set(tp) == {plan.layout.tp}
    assert any("vllm serve" in line for line in lines)
