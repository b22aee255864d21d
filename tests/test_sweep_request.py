"""Sweep flags checked against the model and the machine; which cases run, which are skipped and why."""

from __future__ import annotations

import pytest

from tpplan import io
from tpplan.cli.flags import flag_of
from tpplan.errors import ConfigError, LayoutError
from tpplan.io import load_model, load_profile
from tpplan.records.requests import SweepRequest
from tpplan.sweep.request import auto_layers, prepare

CPU = load_profile("cpu-local")


def plan(model="tiny", **kw):
    request = io.validate_request(SweepRequest, kw)  # the flags' values, as the CLI passes them
    return prepare(load_model(model), CPU, r=request, rank_limit=(8, "test limit"))


def test_default_is_the_models_dtype_and_even_heads():
    settings, cases, skipped, _ = plan(tp=[1, 2])
    assert [(c.tp, c.dtype, c.heads_mode) for c in cases] == [(1, "bf16", "even"), (2, "bf16", "even")]
    assert not skipped and settings.backend == "gloo"
    assert cases[1].key == "tiny-llama/tp2-pp1-r1/bf16/even/t128x2/L4"
    assert cases[1].engines_accepting == ["vllm", "megatron", "sglang"]


def test_36_heads_at_tp8_are_skipped_unless_a_form_is_asked_for():
    _, cases, skipped, _ = plan("minicpm-2b", tp=[8], layers=1)
    assert not cases and len(skipped) == 1
    m = skipped[0]
    assert m.status == "skipped" and m.heads_per_rank == [5, 5, 5, 5, 4, 4, 4, 4]
    assert "--heads uneven,padded" in m.reason and "vllm/config/model.py" in m.reason
    _, cases, skipped, _ = plan("minicpm-2b", tp=[4, 8], heads="padded,uneven", layers=1, dtypes="fp32")
    assert [(c.tp, c.heads_mode) for c in cases] == [(4, "even"), (8, "uneven"), (8, "padded")]
    assert cases[1].engines_accepting == [] and not skipped


def test_cases_are_ordered_by_process_group_size():
    _, cases, _, _ = plan(tp=[1, 2], pp=[1, 2], replicas=[1, 2], dtypes="fp32")
    sizes = [c.ranks for c in cases]
    assert sizes == sorted(sizes) and sizes[0] == 1 and sizes[-1] == 8


@pytest.mark.parametrize(
    ("kw", "error", "text"),
    [
        (dict(dtypes="fp32,fp9"), ConfigError, "--dtype: 'fp9'"),
        (dict(dtypes="fp8"), ConfigError, "fp8 needs engine kernels"),
        (dict(heads="even"), ConfigError, "--heads: 'even' is not a heads form"),
        (dict(tokens=0), ConfigError, "--tokens: 0"),
        (dict(iters=0), ConfigError, "--iters: 0"),
        (dict(timeout_s=-1.0), ConfigError, "--timeout-s"),
        (dict(atol=float("nan")), ConfigError, "--atol"),
        (dict(layers=1, pp=[2]), ConfigError, "--layers: 1 is fewer than the 2 pipeline stages"),
        (dict(tp=[16]), LayoutError, "exceeds num_attention_heads (8)"),
        (dict(tp=[8], pp=[2]), LayoutError, "needs 16 local ranks; this machine allows 8 (test limit)"),
        (dict(tp=[4], replicas=[4]), LayoutError, "4 replicas of TP4×PP1 need 16 local ranks"),
        (dict(pp=[5]), LayoutError, "--pp 5 exceeds num_layers (4)"),
    ],
)
def test_bad_flags_are_one_line_errors(kw, error, text):
    with pytest.raises(error) as e:
        plan(**kw)
    shown = e.value.renamed(flag_of) if isinstance(e.value, ConfigError) else e.value  # as the CLI shows it
    assert text in str(shown) and "\n" not in str(shown)


def test_nccl_profile_without_gpus_says_what_to_use():
    with pytest.raises(LayoutError, match="--profile cpu-local"):
        prepare(load_model("tiny"), load_profile("dgx-h100"), r=SweepRequest(tp=[1]))


def test_local_limit_is_four_cpu_ranks_per_core(monkeypatch):
    monkeypatch.setattr("tpplan.sweep.request.cpu_cores", lambda: 2)
    with pytest.raises(LayoutError, match=r"allows 8 \(4 CPU ranks per core on 2 core\(s\)\)"):
        prepare(load_model("tiny"), CPU, r=SweepRequest(tp=[8], replicas=[2]))
    _, cases, _, _ = prepare(load_model("tiny"), CPU, r=SweepRequest(replicas=[2]))
    # default TP degrees: one rank per core, TP=2 always (a drift check), room for the 2 replicas
    assert sorted({c.tp for c in cases}) == [1, 2]


def layers_for(model, backend: str, **given) -> tuple[int, str]:
    """auto_layers with one bf16 replica of 128x2 tokens on one rank unless `given` says otherwise."""
    settings = {"min_tp": 1, "max_pp": 1, "dtypes": ["bf16"], "tokens": 128, "batch": 2, "ranks": 1}
    return auto_layers(model, backend, **{**settings, "replicas": 1, **given})


def test_auto_layers_sample_a_model_too_large_and_say_so():
    big = load_model("llama-3.1-70b")
    # one 80 GiB GPU at TP=1 holds ~50 bf16 layers of 0.86 G parameters; at TP=8 all 80
    k, why = layers_for(big, "nccl", memory_gib=80, tflops=989)
    assert 45 <= k <= 50 and why == f"{k} of 80 layers (limited by memory; set --layers to change)"
    assert layers_for(big, "nccl", min_tp=8, memory_gib=80, tflops=989)[0] == 80
    # 8 CPU ranks: one ~2 s step, and ~30 s to draw 8 ranks' weights, are the limits
    k, why = layers_for(big, "gloo", min_tp=8, memory_gib=16, ranks=8, tflops=0.1)
    assert k == 1 and "TFLOP/s" in why
    k, why = layers_for(big, "gloo", min_tp=8, tokens=8, batch=1, memory_gib=16, ranks=8, tflops=100)
    assert k == 1 and "to draw the weights of 8 rank(s)" in why
    tiny = load_model("tiny")
    fp32 = {"dtypes": ["fp32"], "tflops": 0.1}
    assert layers_for(tiny, "gloo", memory_gib=3.0, ranks=4, **fp32) == (4, "all layers")
    with pytest.raises(
        LayoutError, match="one layer of Llama-3.1-70B at tp 1 does not fit: 2.0 GiB available"
    ):
        layers_for(big, "gloo", memory_gib=2, **fp32)
