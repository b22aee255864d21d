"""Disaggregated prefill/decode pricing (costmodel/disagg.py through the façade's Pricer): the price,
the x:y balance between prompt-bound prefill and decode-bound decode instances, and the KV transfer
over NVLink against the network."""

from __future__ import annotations

import pytest

from tpplan import costmodel
from tpplan.api.search import prepare
from tpplan.costmodel import Params
from tpplan.costmodel import disagg as pd
from tpplan.search.disagg import DisaggConfig, Side
from tpplan.search.split import Pricer

ISL, OSL = 2048, 256


@pytest.fixture(scope="module")
def pricer() -> Pricer:
    prep = prepare(
        "llama-3.1-70b", ["dgx-h100"], input_tokens=ISL, output_tokens=OSL, gpus=16, max_model_len=8192
    )
    return Pricer(
        prep.model,
        prep.profiles,
        prep.space,
        prep.question,
        costmodel.deployment,
        costmodel.engine_config,
    )


def config(px: int, dy: int, seqs: int = 128, ptp: int = 2, dtp: int = 4) -> DisaggConfig:
    return DisaggConfig("dgx-h100", Side(ptp, 1, px), Side(dtp, 1, dy), seqs, "bf16", "bf16")


def test_price_is_tokens_over_all_gpus_at_the_profile_rate(pricer):
    c = config(3, 1)
    ev = pricer.price(c)
    usd_per_hour = c.gpus * pricer.profiles["dgx-h100"].price.usd_per_gpu_hour.value
    assert c.gpus == 3 * 2 + 4
    assert ev.output_tokens_per_usd == pytest.approx(ev.output_tokens_per_s * 3600 / usd_per_hour)
    # the same deployment on twice the GPU price earns half the tokens per USD
    p = pricer.profiles["dgx-h100"]
    dear = p.model_copy(
        update={
            "price": p.price.model_copy(
                update={
                    "usd_per_gpu_hour": p.price.usd_per_gpu_hour.model_copy(
                        update={"value": 2 * p.price.usd_per_gpu_hour.value}
                    )
                }
            )
        }
    )
    pricer2 = Pricer(
        pricer.model,
        {"dgx-h100": dear},
        prepare(
            "llama-3.1-70b", ["dgx-h100"], input_tokens=ISL, output_tokens=OSL, gpus=16, max_model_len=8192
        ).space,
        pricer.q,
        costmodel.deployment,
        costmodel.engine_config,
    )
    assert pricer2.price(c).output_tokens_per_usd == pytest.approx(ev.output_tokens_per_usd / 2, rel=1e-6)


def test_prefill_instances_balance_the_decode_side(pricer):
    """One TP2 prefill instance cannot keep a full TP4 decode instance busy: adding prefill instances
    raises the rate until about the balanced ratio, and beyond it only idles them."""
    evs = {x: pricer.price(config(x, 1)) for x in range(1, 7)}
    balanced = evs[1].balanced_ratio
    assert 1.5 < balanced < 5  # prompt-bound: several prefill instances per decode instance
    assert evs[1].prefill_utilization > 0.95  # saturated (the cap is 0.98; the closed loop stops short)
    rates = [evs[x].output_tokens_per_s for x in range(1, 7)]
    assert rates == sorted(rates)  # more prefill never serves less
    below, above = int(balanced), int(balanced) + 2
    assert rates[below - 1] < 0.9 * rates[above - 1]  # short of balance: prefill-bound
    assert rates[5] < 1.1 * rates[above - 1]  # past balance: the decode side bounds the rate
    assert evs[6].prefill_utilization < 0.75
    # TTFT falls as prefill queues shorten; TPOT is the decode side's
    assert evs[6].ttft_ms < evs[1].ttft_ms / 3
    ttfts = [evs[x].ttft_ms for x in range(1, 7)]
    assert ttfts == sorted(ttfts, reverse=True)


def test_decode_steps_carry_no_prompts(pricer):
    """TPOT of a decode instance is its decode-only step at the sequences decoding (Little's law:
    rate x O x TPOT), lower than the same layout's TPOT when it also runs the prompts (aggregated)."""
    ev = pricer.price(config(6, 1))
    _, steps = pricer.side("dgx-h100", 4, 1, "bf16", "bf16")
    rate_per_ms = ev.output_tokens_per_s / OSL / 1e3
    assert ev.tpot_ms == pytest.approx(steps.decode_ms(rate_per_ms * OSL * ev.tpot_ms), rel=1e-3)
    from tpplan.records import Layout
    from tpplan.specs import Workload

    agg = costmodel.price_layout(
        pricer.model,
        pricer.profiles["dgx-h100"],
        layout=Layout(tp=4),
        workload=Workload(input_tokens=ISL, output_tokens=OSL, concurrency=128),
        engine="vllm",
        max_num_seqs=128,
        budget_gpus=16,
        max_model_len=8192,
    )
    assert ev.tpot_ms < 0.8 * agg.tpot_ms


def test_kv_transfer_is_faster_over_nvlink_than_the_network(pricer):
    params = Params(pricer.profiles["dgx-h100"])
    _, pre = pricer.side("dgx-h100", 4, 1, "bf16", "bf16")
    _, dec = pricer.side("dgx-h100", 4, 1, "bf16", "bf16")
    nvlink = pd.kv_transfer_ms(
        params, pre.inst, prefill_world=4, decode=dec.inst, input_tokens=ISL, fabrics=["nvlink"]
    )
    network = pd.kv_transfer_ms(
        params, pre.inst, prefill_world=4, decode=dec.inst, input_tokens=ISL, fabrics=["network"]
    )
    # 2048 tokens x 80 layers x 8 KV heads x 128 x 2 (K, V) x 2 bytes = 671 MB, a quarter per GPU link
    per_link_gb = 2048 * 80 * 8 * 128 * 2 * 2 / 4 / 1e9
    assert network == pytest.approx(per_link_gb / (50 * 0.92) * 1e3, rel=0.02)  # NDR 50 GB/s per GPU x 0.92
    assert nvlink == pytest.approx(per_link_gb / (450 * 0.78) * 1e3, rel=0.05)  # NVLink4 450 GB/s x 0.78
    mixed = pd.kv_transfer_ms(
        params, pre.inst, prefill_world=4, decode=dec.inst, input_tokens=ISL, fabrics=["nvlink", "network"]
    )
    assert mixed == pytest.approx((nvlink + network) / 2)


def test_placement_decides_the_link(pricer):
    """TP4 + TP4 share one DGX (NVLink); TP8 + TP8 take a node each (the network); 1 x TP4 prefill +
    2 x TP4 decode: the first decode instance shares node 0 with the prefill instance, the second is
    on node 1; 2 x TP4 prefill fill node 0, so the decode instance's link is the network."""
    assert pricer.placement(config(1, 1, ptp=4, dtp=4)) == (["nvlink"], None)
    assert pricer.placement(config(1, 1, ptp=8, dtp=8)) == (["network"], None)
    assert pricer.placement(config(1, 2, ptp=4, dtp=4)) == (["nvlink", "network"], None)
    assert pricer.placement(config(2, 1, ptp=4, dtp=4)) == (["network", "network"], None)
    links, problem = pricer.placement(config(2, 1, ptp=8, dtp=8))
    assert problem and "budget is 16" in problem
    ev = pricer.price(config(1, 1, ptp=4, dtp=4))
    assert (
        ev.kv_fabric == "nvlink"
        and ev.kv_transfer_ms < pricer.price(config(1, 1, ptp=8, dtp=8)).kv_transfer_ms
    )
