"""The search space: real configurations only, each counted once, dtypes only where the GPU runs them."""

from __future__ import annotations

import itertools
import math

import pytest

from tpplan import api, engines
from tpplan.search import Arm, Config, Space, dtype_pairs


def arm(profile: str = "dgx-h100", budget: int = 16, model: str = "llama-3.1-70b") -> Arm:
    m = api.load_model(model)
    return Arm(
        profile,
        budget,
        tuple(engines.accepted_tp("vllm", m, budget)),
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


def test_size_counts_every_layout_of_the_budget_once_without_a_client_load():
    space = Space((arm(budget=16),), concurrency=None)
    configs = list(space.configs())
    assert len({c.key for c in configs}) == len(configs) == space.size
    # by hand: TP in 1,2,4,8,16 (vLLM, 64 heads, 8 KV heads), PP in powers of two with TP×PP <= 16,
    # replicas fill the budget; 11 max_num_seqs values
    layouts = [(tp, pp) for tp, pp in itertools.product([1, 2, 4, 8, 16], [1, 2, 4, 8, 16]) if tp * pp <= 16]
    assert space.size == len(layouts) * 11
    assert all(c.gpus == 16 and c.replicas == 16 // (c.tp * c.pp) for c in configs)


def test_with_a_client_load_replicas_vary_and_max_num_seqs_never_exceeds_a_replicas_share():
    space = Space((arm(budget=8),), concurrency=100)
    configs = list(space.configs())
    assert len({c.key for c in configs}) == space.size
    assert {c.replicas for c in configs if c.tp == 1 and c.pp == 1} == set(range(1, 9))
    for c in configs:
        share = math.ceil(100 / c.replicas)
        assert 1 <= c.max_num_seqs <= share and c.gpus <= 8
    # powers of two up to the share (34 clients of 100 on 3 replicas), then the share itself
    assert [space.seqs_at(k, 3) for k in range(8)] == [1, 2, 4, 8, 16, 32, 34, 34]


def test_every_draw_decodes_to_a_configuration_within_the_budget():
    h100, a100 = arm("dgx-h100", 16), arm("dgx-a100-80g", 8)
    space = Space((h100, a100), concurrency=64)
    for params, config in space.draws():
        decoded, why = space.decode(params)
        assert decoded == config and why == ""
        assert config.gpus <= space.arm(config.profile).budget_gpus


def test_a_draw_over_the_budget_names_no_configuration_and_says_why():
    space = Space((arm("dgx-h100", 16), arm("dgx-a100-80g", 8)), concurrency=64)
    params = {
        "profile": "dgx-a100-80g",
        "tp_index": 3,
        "pp_log2": 0,
        "replicas": 2,
        "seqs_log2": 0,
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
    assert isinstance(config, Config) and config.tp == 1 and config.pp == 1
    assert set(t.asked) == {"profile", *space.dims}
    assert ("replicas" in t.asked) == (concurrency is not None)


def test_optuna_is_imported_only_when_a_study_runs():
    import subprocess
    import sys

    code = "import sys, tpplan.api, tpplan.api.search, tpplan.search; print('optuna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
