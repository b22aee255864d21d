"""The search space: real configurations only, each counted once, dtypes only where the GPU runs them."""

from __future__ import annotations

import itertools

import pytest

from tpplan import api, engines
from tpplan.search import MAX_SEQS, Arm, Setup, Space, dtype_pairs


def arm(profile: str = "dgx-h100", budget: int = 16, model: str = "llama-3.1-70b") -> Arm:
    m = api.load_model(model)
    return Arm(
        profile,
        budget,
        tuple(engines.accepted_tp("vllm", m, limit=budget)),
        min(m.num_layers, budget),
        (("bf16", "bf16"),),
    )


def test_dtype_pairs_follow_the_gpu_and_the_engine():
    assert dtype_pairs(["bf16", "fp8"], ["auto", "fp8"], supports_fp8=False, engine="vllm") == (
        ("bf16", "bf16"),
    )
    # auto is the activation dtype: fp8 weights keep a bf16 cache unless fp8 is asked for
    assert dtype_pairs(["bf16", "fp8"], ["auto", "fp8"], supports_fp8=True, engine="vllm") == (
        ("bf16", "bf16"),
        ("bf16", "fp8"),
        ("fp8", "bf16"),
        ("fp8", "fp8"),
    )
    # Megatron-LM keeps its cache in the activation dtype: fp8 weights with a bf16 cache, no fp8 cache
    assert dtype_pairs(["bf16", "fp8"], ["auto", "fp8"], supports_fp8=True, engine="megatron") == (
        ("bf16", "bf16"),
        ("fp8", "bf16"),
    )


def test_size_counts_every_setup_of_the_budget_once_without_a_client_load():
    space = Space((arm(budget=16),), concurrency=None)
    setups = list(space.setups())
    assert len({s.key for s in setups}) == len(setups) == space.size
    # by hand: TP in 1,2,4,8,16 (vLLM, 64 heads, 8 KV heads), PP in powers of two with TP×PP <= 16,
    # replicas fill the budget; max_num_seqs is no dimension of the sampled space (search/batch.py)
    layouts = [(tp, pp) for tp, pp in itertools.product([1, 2, 4, 8, 16], [1, 2, 4, 8, 16]) if tp * pp <= 16]
    assert space.size == len(layouts)
    assert all(s.gpus == 16 and s.replicas == 16 // (s.tp * s.pp) for s in setups)


def test_with_a_client_load_replicas_vary_and_max_num_seqs_never_exceeds_a_replicas_share():
    space = Space((arm(budget=8),), concurrency=100)
    setups = list(space.setups())
    assert len({s.key for s in setups}) == space.size
    assert {s.replicas for s in setups if s.tp == 1 and s.pp == 1} == set(range(1, 9))
    assert all(s.gpus <= 8 for s in setups)
    # every integer up to the KV cache's hold and a replica's share of the clients (34 of 100 on 3)
    assert space.seqs_upper(3, held=500) == 34 and space.seqs_upper(3, held=20) == 20
    assert space.seqs_upper(3, held=0) == 1  # nothing fits: one (infeasible) configuration
    assert Space((arm(budget=8),), concurrency=None).seqs_upper(1, held=10**6) == MAX_SEQS


def test_every_draw_decodes_to_a_configuration_within_the_budget():
    h100, a100 = arm("dgx-h100", 16), arm("dgx-a100-80g", 8)
    space = Space((h100, a100), concurrency=64)
    for params, setup in space.draws():
        decoded, why = space.decode(params)
        assert decoded == setup and why == ""
        assert setup.gpus <= space.arm(setup.profile).budget_gpus


def test_a_draw_over_the_budget_names_no_configuration_and_says_why():
    space = Space((arm("dgx-h100", 16), arm("dgx-a100-80g", 8)), concurrency=64)
    params = {
        "profile": "dgx-a100-80g",
        "tp_index": 3,
        "pp_log2": 0,
        "replicas": 2,
        "dtype_index": 0,
    }
    config, why = space.decode(params)  # TP=8 x2 on an 8-GPU budget
    assert config is None and "needs 16 GPUs; the budget is 8" in why


class Recorder:
    """Answers suggest_* with the low end and records the ranges asked for."""

    def __init__(self) -> None:
        self.asked: dict[str, object] = {}

    def suggest_categorical(self, name, choices):
        self.asked[name] = list(choices)
        return choices[0]

    def suggest_int(self, name, low, high, log=False):
        self.asked[name] = (low, high)
        return low


@pytest.mark.parametrize("concurrency", [None, 64])
def test_a_trial_asks_every_parameter_with_fixed_ranges(concurrency):
    space = Space((arm("dgx-h100", 16),), concurrency)
    t = Recorder()
    config, _ = space.suggest(t)
    assert isinstance(config, Setup) and config.tp == 1 and config.pp == 1
    assert set(t.asked) == {"profile", *space.dims}
    assert ("replicas" in t.asked) == (concurrency is not None)


def test_optuna_is_imported_only_when_a_study_runs():
    import subprocess
    import sys

    code = "import sys, tpplan.api, tpplan.api.search, tpplan.search; print('optuna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
