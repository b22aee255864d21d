"""Issue 15 part 5: the flags users expect on every command that plans — --price-usd-per-gpu-hour,
--dtype on candidates, --tp/--pp pins on search, --max-model-len on estimate serve, one meaning of
--kv-cache-dtype auto, and --hf-id / --served-model on search and emit."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import run
from emit_helpers import argv_of, engine_flags, make_plan

from tpplan import api
from tpplan.api.search import prepare
from tpplan.cli.common import KV_AUTO_HELP
from tpplan.enginebench import client
from tpplan.errors import ConfigError
from tpplan.records import Layout
from tpplan.search import climb, rank_key, solved_setups
from tpplan.specs import Workload

Q = {"input_tokens": 2048, "output_tokens": 256, "gpus": 16}


# ---- --tp / --pp pins on search ---------------------------------------------------------------
def test_pins_restrict_the_space_to_the_pinned_degrees():
    free = prepare("llama-3.1-70b", ["dgx-h100"], **Q)
    pinned = prepare("llama-3.1-70b", ["dgx-h100"], **Q, tp="4,8", pp="1")
    layouts = {(c.tp, c.pp) for c in pinned.space.setups()}
    assert layouts == {(4, 1), (8, 1)}
    assert pinned.space.size < free.space.size
    assert pinned.study_name != free.study_name  # a pinned search is another study


def test_a_pp_pin_alone_keeps_every_tp_that_fits_it():
    pinned = prepare("llama-3.1-70b", ["dgx-h100"], **Q, pp=[2])
    assert {c.pp for c in pinned.space.setups()} == {2}
    assert {c.tp for c in pinned.space.setups()} == {1, 2, 4, 8}  # TP 16 x PP 2 is over the budget


def test_an_impossible_tp_pin_names_the_flag_and_the_possible_degrees(capsys):
    code, _, err = run(
        capsys, "search", "llama-3.1-70b", "--profile", "dgx-h100", "--gpus", "16",
        "--isl", "2048", "--osl", "256", "--tp", "3",
    )  # fmt: skip
    assert code == 2
    assert err.strip().splitlines() == [err.strip()]
    assert err.startswith("ConfigError: --tp: 3 is not possible") and "expected one of 1, 2, 4, 8, 16" in err


def test_a_pp_pin_too_deep_for_the_pinned_tp_is_refused():
    with pytest.raises(ConfigError) as e:
        prepare("llama-3.1-70b", ["dgx-h100"], **Q, tp=[8], pp=[4])
    assert e.value.field == "pp" and e.value.expected == "one of 1, 2"


# ---- --price-usd-per-gpu-hour -------------------------------------------------------------------
def test_search_price_replaces_the_profiles_and_says_it_was_given_on_the_command_line():
    prep = prepare("llama-3.1-70b", ["dgx-h100", "hgx-b200"], **Q, prices=["1.5", "hgx-b200=4.25"])
    h100, b200 = (prep.profiles[n].price.usd_per_gpu_hour for n in ("dgx-h100", "hgx-b200"))
    assert (h100.value, b200.value) == (1.5, 4.25)
    assert h100.basis == "given" and h100.source.startswith("given on the command line")


def test_a_price_for_a_profile_not_searched_is_refused():
    with pytest.raises(ConfigError) as e:
        prepare("llama-3.1-70b", ["dgx-h100"], **Q, prices=["hgx-b200=3"])
    assert e.value.field == "prices" and "dgx-h100" in e.value.expected


def _serve(**kw):
    layout = Layout(tp=8, pp=1, replicas=1)
    work = Workload(input_tokens=1024, output_tokens=256, concurrency=32)
    return api.estimate_serve("llama-3.1-70b", "dgx-h100", layout=layout, workload=work, **kw)


def test_estimate_price_scales_tokens_per_usd_and_is_cited():
    published = _serve()
    cheap = _serve(price_usd_per_gpu_hour=published.usd_per_hour / 8 / 2)  # half the published price
    assert cheap.output_tokens_per_usd == pytest.approx(2 * published.output_tokens_per_usd, rel=1e-6)
    assert cheap.provenance["price"].basis == "given"


def test_candidates_price_is_shown_and_a_bad_one_refused(capsys):
    code, out, _ = run(
        capsys, "candidates", "llama-3.1-70b", "--profile", "dgx-h100", "--tp", "4", "--pp", "1",
        "--price-usd-per-gpu-hour", "2.5",
    )  # fmt: skip
    assert code == 0 and "10.00" in out and "given on the command line" in out  # 4 GPUs x $2.5
    code, _, err = run(
        capsys, "candidates", "llama-3.1-70b", "--profile", "dgx-h100", "--price-usd-per-gpu-hour", "-1"
    )
    assert code == 2 and err.startswith("ConfigError: --price-usd-per-gpu-hour: -1.0 is not a price")


# ---- --dtype on candidates ---------------------------------------------------------------------
def test_candidates_dtype_changes_the_memory_fit():
    def tp2(dtype):
        _, _, _, found = api.list_candidates(
            "llama-3.1-70b", "dgx-h100", tp=[2], pp=[1], max_model_len=65536, dtype=dtype
        )
        return found[0]

    bf16, fp8 = tp2("bf16"), tp2("fp8")
    assert fp8.weights_gib_per_gpu == pytest.approx(bf16.weights_gib_per_gpu / 2, rel=0.05)
    assert not bf16.fits and fp8.fits  # 64k tokens fit only beside fp8 weights


def test_candidates_fp8_on_a_gpu_without_fp8_tensor_cores_is_refused(capsys):
    code, _, err = run(capsys, "candidates", "llama-3.1-70b", "--profile", "dgx-a100-80g", "--dtype", "fp8")
    assert code == 2 and err.startswith("ConfigError: --dtype: A100") and "no FP8 tensor cores" in err


# ---- --max-model-len on estimate serve ---------------------------------------------------------
def test_estimate_max_model_len_is_the_context_the_kv_cache_must_fit():
    layout = Layout(tp=2, pp=1, replicas=1)
    work = Workload(input_tokens=1024, output_tokens=256, concurrency=8)
    short = api.estimate_serve("llama-3.1-70b", "dgx-h100", layout=layout, workload=work)
    long = api.estimate_serve("llama-3.1-70b", "dgx-h100", layout=layout, workload=work, max_model_len=65536)
    assert short.runnable and not long.runnable
    assert any("max_model_len 65,536" in r.text for r in long.reasons)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("1000", "1000 is shorter than one request (1024 + 256 tokens)"),
        ("200000", "exceed Llama-3.1-70B's context"),
    ],
)
def test_estimate_max_model_len_bounds(capsys, value, says):
    code, _, err = run(
        capsys, "estimate", "serve", "llama-3.1-70b", "--profile", "dgx-h100", "--tp", "8",
        "--isl", "1024", "--osl", "256", "--concurrency", "8", "--max-model-len", value,
    )  # fmt: skip
    assert code == 2 and err.startswith("ConfigError: --max-model-len:") and says in err


# ---- one meaning of --kv-cache-dtype auto ------------------------------------------------------
@pytest.mark.parametrize("command", [["search"], ["estimate", "serve"], ["candidates"]])
def test_every_help_gives_the_one_meaning_of_kv_auto(capsys, command):
    _, out, _ = run(capsys, *command, "--help")
    assert " ".join(KV_AUTO_HELP.split()) in " ".join(out.split())
    assert "kv_cache_quant_algo" in KV_AUTO_HELP and "resolve_kv_cache_dtype_string" in KV_AUTO_HELP


# ---- --hf-id / --served-model ------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_emit_serves_the_repo_id_under_the_served_name(engine, reference):
    _, text = api.emit_plan(
        make_plan(engine=engine), hf_id="meta-llama/Llama-3.1-70B-Instruct", served_model="llama-70b"
    )
    argv = argv_of(text)[0]
    assert "meta-llama/Llama-3.1-70B-Instruct" in argv
    assert argv[argv.index("--served-model-name") + 1] == "llama-70b"
    assert "--served-model-name" in engine_flags(reference, engine)


def test_emit_model_path_still_wins_over_the_repo_id():
    _, text = api.emit_plan(make_plan(), hf_id="meta-llama/Llama-3.1-70B", model_path="/models/l70b")
    argv = argv_of(text)[0]
    assert "/models/l70b" in argv and "meta-llama/Llama-3.1-70B" not in argv
    assert "--served-model-name" not in argv  # no name asked: the engine answers to what it loads


@pytest.mark.parametrize(("flag", "value"), [("--hf-id", "not-a-repo"), ("--served-model", "two words")])
def test_emit_refuses_a_bad_name(capsys, tmp_path: Path, flag, value):
    from tpplan import io

    plan = tmp_path / "plan.yaml"
    io.write_text(plan, io.to_yaml(make_plan()))
    code, _, err = run(capsys, "emit", str(plan), flag, value)
    assert code == 2 and err.startswith(f"ConfigError: {flag}: {value!r}")


def test_the_bench_client_sends_the_served_name():
    point = {"port": 8000, "model_path": "/models/l70b", "isl": 128, "osl": 16, "concurrency": 4}
    point |= {"num_prompts": 8, "result": Path("r.json")}
    argv = client.command("vllm", Path("/venv/bin"), **point, served_model_name="llama-70b")
    assert argv[argv.index("--served-model-name") + 1] == "llama-70b"
    assert "--served-model-name" not in client.command("vllm", Path("/venv/bin"), **point)


def test_search_writes_the_repo_id_and_served_name_into_the_plan(tmp_path):
    result, plan = api.search(
        "llama-3.1-8b", ["dgx-h100"], input_tokens=1024, output_tokens=256, gpus=8, trials=8,
        hf_id="meta-llama/Llama-3.1-8B-Instruct", served_model="llama", out=str(tmp_path),
    )  # fmt: skip
    assert plan.model_path == "meta-llama/Llama-3.1-8B-Instruct" == plan.model.hf_id
    assert plan.served_model_name == "llama"
    from tpplan import io

    assert io.load_plan(result.plan).served_model_name == "llama"


def test_the_climb_to_a_better_neighbour_stays_within_the_pins():
    # At --tp 8 the best is TP8 x2; its TP/2 neighbour (TP4 x4) earns more, and the unpinned climb takes it
    pinned = prepare("llama-3.1-70b", ["dgx-h100"], **Q, tp="8")
    best = min((r for r in solved_setups(pinned) if r.feasible), key=rank_key)
    assert climb(prepare("llama-3.1-70b", ["dgx-h100"], **Q), best, notes=[])[0].tp == 4
    assert climb(pinned, best, notes=[])[0].tp == 8
