"""Emitting a disaggregated plan: each engine's own disaggregation flags on every instance, a router
line that names every instance, flags that exist in the engines' parser dumps, Megatron refused."""

from __future__ import annotations

import json

import pytest
from emit_helpers import argv_of, engine_flags, make_plan

from tpplan.emit import disagg, emit, render, sglang, vllm
from tpplan.errors import LayoutError
from tpplan.records import Layout


def pd_plan(prefill=(2, 1, 4), decode=(4, 1, 1), **fields):
    tp, pp, r = decode
    ptp, ppp, pr = prefill
    return make_plan(
        "llama-3.1-70b",
        "dgx-h100",
        tp,
        pp,
        r,
        kind="disaggregated",
        prefill=Layout(tp=ptp, pp=ppp, replicas=pr),
        model_path="meta-llama/Llama-3.1-70B-Instruct",
        **fields,
    )


def option(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def test_vllm_instances_carry_their_kv_role_and_the_proxy_names_them_all():
    launch = emit(pd_plan(), "vllm", node_addrs=("10.0.0.1", "10.0.0.2"))
    lines = argv_of(render(launch))
    serves = [a for a in lines if "serve" in a]
    roles = [json.loads(option(a, "--kv-transfer-config"))["kv_role"] for a in serves]
    assert roles == ["kv_producer"] * 4 + ["kv_consumer"]
    assert [option(a, "--tensor-parallel-size") for a in serves] == ["2"] * 4 + ["4"]
    ports = [int(option(a, "--port")) for a in serves]
    assert len(set(ports)) == 5
    side = [next(w for w in a if w.startswith("VLLM_NIXL_SIDE_CHANNEL_PORT=")) for a in serves]
    assert len(set(side[:4])) == 4  # instances sharing node 0 listen on their own ports
    (proxy,) = [a for a in lines if any(w.endswith("toy_proxy_server.py") for w in a)]
    i, j = proxy.index("--prefiller-ports"), proxy.index("--decoder-hosts")
    assert [int(p) for p in proxy[i + 1 : j]] == ports[:4]
    assert [int(p) for p in proxy[proxy.index("--decoder-ports") + 1 :]] == ports[4:]
    assert proxy[proxy.index("--decoder-hosts") + 1] == "10.0.0.2"  # the decode instance is on node 1
    assert [p.role for p in launch.processes].count("router") == 1


def test_sglang_modes_bootstrap_ports_and_router():
    launch = emit(pd_plan(), "sglang")
    lines = argv_of(render(launch))
    servers = [a for a in lines if "sglang.launch_server" in a]
    assert [option(a, "--disaggregation-mode") for a in servers] == ["prefill"] * 4 + ["decode"]
    assert {option(a, "--disaggregation-transfer-backend") for a in servers} == {"mooncake"}
    boots = [option(a, "--disaggregation-bootstrap-port") for a in servers[:4]]
    assert len(set(boots)) == 4 and option(servers[4], "--disaggregation-bootstrap-port") is None
    (router,) = [a for a in lines if "sglang_router.launch_router" in a]
    assert "--pd-disaggregation" in router
    prefills = [router[k + 1 : k + 3] for k, w in enumerate(router) if w == "--prefill"]
    assert [b for _, b in prefills] == boots  # each prefill URL with its bootstrap port
    assert [u.rsplit(":", 1)[1] for u, _ in prefills] == [option(a, "--port") for a in servers[:4]]
    decodes = [router[k + 1] for k, w in enumerate(router) if w == "--decode"]
    assert len(decodes) == 1 and decodes[0].startswith("http://")
    assert decodes[0].endswith(":" + option(servers[4], "--port"))


def test_megatron_refuses_a_disaggregated_plan():
    with pytest.raises(LayoutError, match="not a serving engine"):
        emit(pd_plan(), "megatron")


def test_each_role_passes_the_engine_rules():
    with pytest.raises(LayoutError, match="refuses"):  # 64 heads: vLLM accepts no TP=3
        emit(pd_plan(prefill=(3, 1, 1)), "vllm")


def test_an_aggregated_plan_is_emitted_as_before():
    plan = make_plan("llama-3.1-70b", "dgx-h100", 8, 1, 2)
    assert plan.kind == "aggregated" and plan.prefill is None
    assert "--kv-transfer-config" not in render(emit(plan, "vllm"))


def test_plan_kind_and_prefill_go_together():
    with pytest.raises(ValueError, match="needs `prefill`"):
        make_plan(kind="disaggregated")
    with pytest.raises(ValueError, match="takes no `prefill`"):
        make_plan(prefill=Layout(tp=2))


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_disaggregation_flags_exist_in_the_engine(reference, engine):
    flags = engine_flags(reference, engine)
    module = {"vllm": vllm, "sglang": sglang}[engine]
    for flag in disagg.FLAGS[engine]:
        assert flag in flags, flag
    launch = emit(pd_plan(prefill=(4, 1, 1), decode=(8, 2, 1)), engine, node_addrs=("a", "b", "c"))
    for p in launch.processes:
        for o in p.options:
            assert o.flag in module.FLAGS | disagg.FLAGS[engine], o.flag
            assert o.flag in flags, o.flag
    if engine == "sglang":
        choices = flags["--disaggregation-transfer-backend"]["choices"].split("|")
        assert disagg.SGLANG_BACKEND in choices
        assert set(flags["--disaggregation-mode"]["choices"].split("|")) >= {"prefill", "decode"}
