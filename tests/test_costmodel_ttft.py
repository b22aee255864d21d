"""TTFT as engines make it: KV admission at full length, the queue, preemption, chunked prefill."""

from __future__ import annotations

import dataclasses

import pytest

from tpplan import api, costmodel, io
from tpplan.costmodel.serving import EngineConfig, Load, recomputes_per_request, slots, steady_state
from tpplan.costmodel.step import Instance
from tpplan.records import Layout
from tpplan.specs import Workload

VLLM = EngineConfig("vllm", 8192, 1024, False, "test: vLLM-like on-demand KV")
TRTLLM = dataclasses.replace(VLLM, name="trtllm", reserves_full_sequence=True)


def _h100_8b(engine: str = "vllm") -> tuple[Instance, costmodel.Params]:
    model = io.load_model("llama-3.1-8b")
    inst = Instance(model, 1, (model.num_layers,), engine, "bf16", "none", "none")
    return inst, costmodel.Params(io.load_profile("dgx-h100"))


def test_the_issue_case_queues_behind_a_full_kv_cache():
    """TP1 8B, 200/2000 tokens at concurrency 250 (issue 14: measured 15-25 s, predicted 0.3-0.45 s
    when the cache was counted at mean length): the cache holds ~200 full sequences, the rest wait."""
    est = api.estimate_serve(
        "llama-3.1-8b",
        "dgx-h100",
        layout=Layout(tp=1),
        workload=Workload(input_tokens=200, output_tokens=2000, concurrency=250),
    )
    assert est.resident_per_instance <= est.kv_cache_tokens // 2200
    assert est.queue_wait_ms > 5_000 and est.ttft_ms > 5_000


def test_slots_count_full_sequences_and_on_demand_engines_recompute_the_surplus():
    load = Load(1000, 1000, 150)
    assert slots(200_000, load, engine=VLLM) == slots(200_000, load, engine=TRTLLM) == 100
    # vLLM admits up to 200 prompts of 1000 tokens, 150 clients: 50 evicted per 100 finished
    assert recomputes_per_request(200_000, load, engine=VLLM) == pytest.approx(0.5)
    assert recomputes_per_request(200_000, load, engine=TRTLLM) == 0.0
    assert recomputes_per_request(200_000, Load(1000, 1000, 80), engine=VLLM) == 0.0  # all fit: no eviction


def test_preemption_recomputes_cost_decode_time():
    inst, params = _h100_8b()
    load = Load(1000, 1000, 150)
    on_demand = steady_state(inst, params, engine=VLLM, load=load, kv_tokens=200_000)
    reserving = steady_state(inst, params, engine=TRTLLM, load=load, kv_tokens=200_000)
    assert on_demand.slots == reserving.slots == 100
    assert on_demand.prefill_tokens_per_step > reserving.prefill_tokens_per_step
    assert on_demand.tpot_ms > reserving.tpot_ms


def test_ttft_at_concurrency_1_is_the_prefill_and_a_small_overhead():
    inst, params = _h100_8b()
    st = steady_state(inst, params, engine=VLLM, load=Load(1024, 256, 1), kv_tokens=400_000)
    lone_prefill = st.mixed_step.time_ms
    assert st.queue_wait_ms == pytest.approx(0.0, abs=1e-6)
    assert lone_prefill <= st.ttft_ms <= lone_prefill + 12.0  # request_ms is held to <= 10 ms
    assert params.overhead("vllm").request_ms.value <= 10.0


def test_chunked_prefill_slows_the_decodes_it_shares_steps_with():
    inst, params = _h100_8b()
    load = Load(8192, 256, 32)
    st = steady_state(inst, params, engine=VLLM, load=load, kv_tokens=400_000)
    assert st.mixed_step.time_ms > 2 * st.decode_step.time_ms
    assert st.tpot_ms > 1.1 * st.decode_step.time_ms
    # a smaller token budget spreads each prompt over more steps: a later first token
    small = steady_state(
        inst,
        params,
        engine=dataclasses.replace(VLLM, max_num_batched_tokens=2048),
        load=load,
        kv_tokens=400_000,
    )
    assert small.prefill_ms > st.prefill_ms


def test_fitted_request_ms_cannot_leave_its_physical_range():
    from tpplan.costmodel.profile_fit import bounded

    assert bounded("request_ms", "vllm", value=44.0) == 10.0
    assert bounded("request_ms", "trtllm", value=125.0) == 125.0
    assert bounded("cohort_fraction", "vllm", value=1e-6) == pytest.approx(0.02)


def test_a_held_slot_makes_one_client_wait_a_whole_request():
    """N clients on N − 1 slots: Little's law puts the wait at one request cycle / (N − 1), less the
    time a client spends outside the engine (request_ms), which overlaps it."""
    inst, params = _h100_8b("trtllm")
    load = Load(1024, 512, 8)
    free = steady_state(inst, params, engine=TRTLLM, load=load, kv_tokens=400_000)
    held = steady_state(
        inst, params, engine=dataclasses.replace(TRTLLM, held_slots=1), load=load, kv_tokens=400_000
    )
    assert free.queue_wait_ms == pytest.approx(0.0, abs=1e-6) and held.slots == 7
    cycle = held.prefill_ms + (512 - 1) * held.tpot_ms
    request_ms = params.overhead("trtllm").request_ms.value
    assert held.queue_wait_ms == pytest.approx(cycle / 7 - request_ms, rel=0.02)
