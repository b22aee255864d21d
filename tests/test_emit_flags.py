"""Every flag tpplan can write exists in that engine, with a value of the engine's type and choices.

Ground truth: the engines' live-parser dumps in ../shared/reference/engines/ (skipped when absent),
checked over every bundled model × many layouts × every GPU profile × both replica modes.
"""

from __future__ import annotations

import pytest
from emit_helpers import GPU_PROFILES, LAYOUTS, bundled_models, engine_flags, make_plan

from tpplan.emit import emit, megatron, sglang, vllm
from tpplan.errors import TpplanError

MODULES = {"vllm": vllm, "megatron": megatron, "sglang": sglang}
# vLLM validates --kv-cache-dtype at config time, not in argparse (reference/engines/README.md §1, stage 3).
VLLM_KV_CHOICES = {
    "auto",
    "float16",
    "bfloat16",
    "fp8",
    "fp8_e4m3",
    "fp8_e5m2",
    "fp8_inc",
    "fp8_ds_mla",
    "nvfp4",
}


def all_launches(engine: str):
    """(plan, launch) for every combination the engine accepts; refusals are counted, not hidden."""
    launches, refused = [], 0
    for model in bundled_models():
        for profile in GPU_PROFILES:
            for tp, pp, r in LAYOUTS:
                for kv in ("auto", "fp8"):
                    plan = make_plan(model, profile, tp, pp, r, kv_cache_dtype=kv)
                    for mode in ("instances", "dp"):
                        try:
                            launches.append((plan, emit(plan, engine, replica_mode=mode)))
                        except TpplanError:
                            refused += 1
    return launches, refused


@pytest.fixture(scope="module", params=["vllm", "megatron", "sglang"])
def engine_launches(request):
    launches, refused = all_launches(request.param)
    return request.param, launches, refused


def test_vocabulary_exists_in_engine(reference, engine_launches):
    engine = engine_launches[0]
    known = engine_flags(reference, engine)
    extra = megatron.ENTRY_POINT_FLAGS if engine == "megatron" else frozenset()
    missing = sorted(f for f in MODULES[engine].FLAGS - extra if f not in known)
    assert not missing, f"{engine} has no {missing}"
    assert not extra & known.keys(), (
        "an entry-point flag now exists in the training parser; drop it from the extras"
    )


def test_every_emitted_flag_and_value_is_the_engines(reference, engine_launches):
    engine, launches, refused = engine_launches
    assert len(launches) > 250 and refused > 0, (len(launches), refused)  # wide coverage, and the rules bite
    known = engine_flags(reference, engine)
    checked = 0
    for _plan, launch in launches:
        for p in launch.processes:
            for o in p.options:
                assert o.flag in MODULES[engine].FLAGS, o.flag
                if engine == "megatron" and o.flag in megatron.ENTRY_POINT_FLAGS:
                    continue
                row = known[o.flag]
                if row["type"].startswith("bool("):
                    assert o.value is None, (o.flag, o.value)
                    continue
                assert o.value is not None, f"{o.flag} needs a value"
                if row["type"] in ("int", "human_readable_int", "human_readable_int_or_auto"):
                    assert type(o.value) is int, (o.flag, o.value)
                if row["type"] == "float":
                    assert type(o.value) is float and 0 < o.value <= 1, (o.flag, o.value)
                if row["choices"]:
                    choices = {c.split(".")[-1] for c in row["choices"].split("|")}
                    assert str(o.value) in choices, (o.flag, o.value, choices)
                if engine == "vllm" and o.flag == "--kv-cache-dtype":
                    assert o.value in VLLM_KV_CHOICES
                checked += 1
    assert checked > 5000, checked


def test_torchrun_flags_exist():
    run = pytest.importorskip("torch.distributed.run")
    parser = run.get_args_parser()
    known = {s for a in parser._actions for s in a.option_strings}
    assert known >= megatron.TORCHRUN_FLAGS, megatron.TORCHRUN_FLAGS - known
    launch = emit(make_plan(tp=8, pp=2), "megatron")
    for p in launch.processes:
        used = {w for w in p.command if isinstance(w, str) and w.startswith("--")}
        assert used <= megatron.TORCHRUN_FLAGS
        args = parser.parse_args([w if isinstance(w, str) else "10.0.0.1" for w in p.command[1:]])
        assert args.nnodes == "2" and args.nproc_per_node == "8"
