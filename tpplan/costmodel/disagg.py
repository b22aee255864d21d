"""Disaggregated prefill/decode: x prefill instances and y decode instances (each its own TP × PP),
each prompt's KV cache sent from the prefill instance that computed it to a decode instance.

Priced with the same step model, engine overheads and closed loop as aggregated serving (serving.py):

- A prefill instance runs prompts only, in steps of the engine's token budget B. At load one prompt
  of I tokens costs I/B of a full step, so an instance serves mu_p = B / (I · T(B)) requests per ms
  (prompt-bound). A request waits behind earlier prompts (an M/D/1 queue on the budget, utilization
  rho = lambda_p / mu_p, capped below 1) and behind half of its cohort (requests that finished
  together come back together; the router spreads a cohort over the x prefill instances), then runs
  its own chunks.
- Its KV cache goes to a decode instance: each decode rank receives what it stores for the prompt,
  each prefill rank sends its share, every GPU over its own link (one NIC per GPU across nodes, its
  NVLink ports inside a domain), priced by the pipeline p2p helper (latency + bytes / link bandwidth
  of the profile). The routers pick instances without regard to locality (vLLM's proxy round-robins,
  sglang_router's default policies are load-based), so the time is the mean over the
  (prefill, decode) instance pairs of the placement.
- A decode instance runs decodes only: TPOT = T(d decodes), no prompt chunk in its steps (the point
  of disaggregation). It computes the first token itself once the KV has arrived (vLLM's proxy asks
  the prefill instance for max_tokens=1, then the decode instance for the whole request), so
      TTFT = 2·r + queue + prefill wait + own prefill + KV transfer + one decode step
  with r the engine's request overhead, paid once at each of the router's two hops (assumed).
- Closed loop at C clients: C = lambda · (2·r + prefill wait + own prefill + KV + O·TPOT), lambda
  capped by the prefill capacity x·mu_p·rho_max and by the decode slots y·S / (KV + O·TPOT); clients
  beyond those wait. The x:y that balances the two sides is decode rate per instance / mu_p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from ..memory import kv_bytes_per_token
from ..records import Provenance
from ..specs import HardwareProfile, ModelSpec
from .collectives import p2p_time_us
from .estimate import Deployment
from .params import NIC_FRACTION, NVLINK_BUSBW_FRACTION, PCIE_BUSBW_FRACTION, Params
from .serving import MAX_ITERATIONS, MAX_PREFILL_UTILIZATION, TOLERANCE, EngineConfig, cohort_size
from .step import Instance, step_cost
from .work import Batch


class StepTimes:
    """Step times of one instance at one request shape, on a grid of batch sizes and interpolated
    between its points (a step is close to linear in its batch between neighbouring sizes): the
    solver asks for thousands of batches, and a layout is shared by many deployments.
    Decodes: every size up to EXACT_DECODES, then steps of DECODE_GRID; prompt tokens: steps of
    PREFILL_GRID."""

    EXACT_DECODES, DECODE_GRID, PREFILL_GRID = 32, 16, 256

    def __init__(self, inst: Instance, params: Params, input_tokens: int, output_tokens: int) -> None:
        self.inst, self.params = inst, params
        self.input_tokens = input_tokens
        self.ctx_decode, self.ctx_prefill = input_tokens + output_tokens / 2, input_tokens / 2
        self.decode_at = lru_cache(maxsize=None)(self._decode_at)
        self.prefill_at = lru_cache(maxsize=None)(self._prefill_at)

    def _decode_at(self, d: int) -> float:
        return step_cost(
            self.inst, self.params, batch=Batch(d, self.ctx_decode, 0.0, self.ctx_prefill, d)
        ).time_ms

    def _prefill_at(self, tokens: int) -> float:
        rows = max(1.0, tokens / self.input_tokens)  # prompts that finish in the step
        batch = Batch(0.0, self.ctx_decode, float(tokens), self.ctx_prefill, rows)
        return step_cost(self.inst, self.params, batch=batch).time_ms

    @staticmethod
    def _between(at, v: float, grid: int, floor: int) -> float:
        v = max(float(floor), v)
        lo = max(floor, math.floor(v / grid) * grid)
        t_lo = at(lo)
        return t_lo if v == lo else t_lo + (v - lo) / grid * (at(lo + grid) - t_lo)

    def decode_ms(self, d: float) -> float:
        grid = 1 if d <= self.EXACT_DECODES else self.DECODE_GRID
        return self._between(self.decode_at, d, grid, 1)

    def prefill_ms(self, tokens: float) -> float:
        if tokens <= self.PREFILL_GRID:
            return self.prefill_at(max(1, math.ceil(tokens)))
        return self._between(self.prefill_at, tokens, self.PREFILL_GRID, self.PREFILL_GRID)


def role_steps(
    model: ModelSpec,
    tp: int,
    *,
    dep: Deployment,
    engine: str,
    kv_dtype: str,
    params: Params,
    isl: int,
    osl: int,
) -> StepTimes:
    """The step times of one instance of a role at its placement (as estimate_serve builds its Instance);
    `model` carries the served dtype."""
    inst = Instance(model, tp, dep.layers_per_stage, engine, kv_dtype, dep.tp_fabric, dep.pp_fabric)
    return StepTimes(inst, params, isl, osl)


def kv_fabric(profile: HardwareProfile, *, a: list[int], b: list[int]) -> str | None:
    """The link between two instances (global GPU indices): nvlink inside one NVLink domain, pcie inside
    one node without NVLink, else the network (None when the profile knows no inter-node fabric)."""
    both = [*a, *b]
    if profile.domain_size > 1 and len({profile.domain_of(g) for g in both}) == 1:
        return "nvlink"
    if len({profile.node_of(g) for g in both}) == 1:
        return "pcie"
    return "network" if profile.inter_node else None


@dataclass(frozen=True)
class Sides:
    """The two instance kinds and their counts."""

    prefill: StepTimes
    prefill_engine: EngineConfig
    prefills: int
    decode: StepTimes
    decode_slots: int  # requests one decode instance holds: max_num_seqs and its KV cache at I + O
    decodes: int


@dataclass(frozen=True)
class DisaggState:
    ttft_ms: float
    tpot_ms: float
    requests_per_ms: float  # the whole deployment
    prefill_ms: float  # a request's own prompt chunks
    prefill_wait_ms: float  # behind other prompts on its prefill instance
    queue_wait_ms: float  # clients beyond what the deployment admits
    kv_transfer_ms: float
    prefill_utilization: float
    decode_resident: float  # requests per decode instance (decoding or receiving KV)
    balanced_ratio: float  # prefill instances one full decode instance keeps busy
    converged: bool


def kv_link_bandwidth(params: Params, fabric: str) -> tuple[float, Provenance]:
    """GB/s one GPU moves to another over `fabric`, as p2p_time_us prices it, and where it came from."""
    p = params.profile
    if fabric == "network" and p.inter_node:
        link, frac, why = p.inter_node.per_gpu_gbps, NIC_FRACTION.value, NIC_FRACTION.source
    elif fabric == "nvlink" and p.nvlink:
        link, frac, why = p.nvlink.per_gpu_unidir_gbps, NVLINK_BUSBW_FRACTION, "nccl-tests busbw over NVLink"
    else:
        link, frac, why = p.pcie.per_gpu_unidir_gbps, PCIE_BUSBW_FRACTION, "nccl-tests busbw over PCIe"
    gbps = link.value * frac
    text = f"{fabric}: {link.value:g} GB/s per GPU ({link.source}) x {frac:g} achieved ({why})"
    return gbps, Provenance(value=f"{gbps:.4g} GB/s per GPU over {fabric}", basis=link.basis, source=text)


def kv_transfer_ms(
    params: Params,
    prefill: Instance,
    *,
    prefill_world: int,
    decode: Instance,
    input_tokens: int,
    fabrics: list[str],
) -> float:
    """Mean time to move one prompt's KV cache from a prefill instance to a decode instance, over the
    fabric of each (prefill, decode) pair of the placement. Each decode rank receives what it stores
    (its KV heads, or the whole MLA latent, for its stage's layers); each prefill rank sends its share;
    each GPU over its own link, all at once."""
    model, kv = decode.model, decode.kv_dtype
    per_rank = kv_bytes_per_token(model, decode.tp, max(decode.layers_per_stage), kv) * input_tokens
    received = kv_bytes_per_token(model, decode.tp, model.num_layers, kv) * input_tokens * decode.tp
    per_link = max(per_rank, received / prefill_world)
    return sum(p2p_time_us(params, per_link, fabric=f) for f in fabrics) / len(fabrics) / 1e3


def rate_bound(
    prefill: StepTimes,
    engine: EngineConfig,
    *,
    x: int,
    decode: StepTimes,
    slots: int,
    y: int,
    output_tokens: int,
) -> float:
    """Requests per ms no solution of steady_state exceeds: the prefill side's capacity at the
    utilization cap, and the decode side full (its rate d / (O · T(d)) grows with d) without KV time."""
    budget = engine.max_num_batched_tokens
    mu_p = budget / (prefill.input_tokens * prefill.prefill_ms(budget))
    return min(x * mu_p * MAX_PREFILL_UTILIZATION, y * slots / (output_tokens * decode.decode_ms(slots)))


@dataclass(frozen=True)
class _At:
    """The loop's times at one request rate."""

    rate: float
    tpot: float
    wait: float
    own: float
    cycle: float  # one request's time, router to last token


def steady_state(
    sides: Sides,
    params: Params,
    *,
    clients: float,
    output_tokens: int,
    kv_ms: float,
    start: float | None = None,
) -> DisaggState:
    """Solve the closed loop of `clients` over the disaggregated deployment: the request rate r with
    r · cycle(r) = clients (Little's law; cycle grows with r, so the root is unique and found by
    regula falsi), or the most the two sides admit when even that leaves clients waiting.
    `start`: a nearby deployment's TPOT, to start the TPOT iteration from."""
    over = params.overhead(sides.prefill.inst.engine)
    request_ms, cohort_fraction = over.request_ms.value, over.cohort_fraction.value
    i_tok, o_tok = sides.prefill.input_tokens, output_tokens
    x, y, slots = sides.prefills, sides.decodes, max(1, sides.decode_slots)
    budget = sides.prefill_engine.max_num_batched_tokens
    full_ms = sides.prefill.prefill_ms(budget)
    mu_p = budget / (i_tok * full_ms)  # requests per ms one prefill instance completes at load
    tpot_guess = [start or sides.decode.decode_ms(min(clients / y, slots))]

    def at(rate: float) -> _At:
        tpot = tpot_guess[0]
        for _ in range(MAX_ITERATIONS):  # TPOT at the decodes this rate keeps resident (a contraction)
            new = sides.decode.decode_ms(min(slots, rate / y * o_tok * tpot))
            done = abs(new - tpot) < TOLERANCE * tpot
            tpot = new
            if done:
                break
        tpot_guess[0] = tpot
        resident = rate / y * (kv_ms + o_tok * tpot)
        cohort = max(1.0, cohort_size(resident, fraction=cohort_fraction) / x)  # spread over x
        chunk = min(cohort * i_tok, budget)
        steps = max(math.ceil(i_tok / budget), (cohort + 1) / 2 * i_tok / budget)  # behind half its cohort
        own = steps * sides.prefill.prefill_ms(chunk)
        rho = rate / (x * mu_p)
        wait = rho * max(1.0, cohort * i_tok / budget) / (2 * (1 - rho)) * full_ms
        return _At(rate, tpot, wait, own, 2 * request_ms + wait + own + kv_ms + o_tok * tpot)

    most = min(
        x * mu_p * MAX_PREFILL_UTILIZATION, y * slots / (kv_ms + o_tok * sides.decode.decode_ms(slots))
    )
    hi, converged = at(most), True
    if hi.rate * hi.cycle > clients:  # the clients do not fill the deployment: find r · cycle(r) = clients
        lo, f_lo, f_hi, side = at(0.0), -clients, hi.rate * hi.cycle - clients, 0
        converged = False
        for _ in range(MAX_ITERATIONS):
            rate = (lo.rate * f_hi - hi.rate * f_lo) / (f_hi - f_lo)
            mid = at(rate)
            f_mid = mid.rate * mid.cycle - clients
            if abs(f_mid) < TOLERANCE * clients:
                converged = True
                break
            if f_mid > 0:
                hi, f_hi = mid, f_mid
                f_lo = f_lo / 2 if side == -1 else f_lo  # Illinois: a stuck end counts half
                side = -1
            else:
                lo, f_lo = mid, f_mid
                f_hi = f_hi / 2 if side == 1 else f_hi
                side = 1
        hi = mid
    queue = max(0.0, clients / hi.rate - hi.cycle)  # clients beyond what the deployment admits
    full_decode = slots / (kv_ms + o_tok * sides.decode.decode_ms(slots))
    return DisaggState(
        ttft_ms=2 * request_ms + queue + hi.wait + hi.own + kv_ms + hi.tpot,
        tpot_ms=hi.tpot,
        requests_per_ms=hi.rate,
        prefill_ms=hi.own,
        prefill_wait_ms=hi.wait,
        queue_wait_ms=queue,
        kv_transfer_ms=kv_ms,
        prefill_utilization=hi.rate / (x * mu_p),
        decode_resident=hi.rate / y * (kv_ms + o_tok * hi.tpot),
        balanced_ratio=full_decode / mu_p,
        converged=converged,
    )
