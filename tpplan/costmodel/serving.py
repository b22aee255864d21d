"""Serving at a closed-loop concurrency, as `vllm bench serve --max-concurrency C` measures it.

A closed loop is a steady state, not one lone request. C clients each keep one request in flight;
a request spends r (outside the engine: HTTP, tokenizing), W (waiting for a sequence slot or KV
space), L_p (prefill, up to its first token) and (O−1)·TPOT (decode) — Little's law ties them:

    C = λ · (r + W + L_p + (O−1)·TPOT)        λ: requests per unit time, per instance

n = λ·(L_p + (O−1)·TPOT) requests are resident in the engine (at most its slots: max_num_seqs, and
what the KV cache holds); d = λ·(O−1)·TPOT of them decode. New requests keep arriving as old ones
finish, and their prompts share steps with everyone's decodes (chunked prefill, a token budget B per
step). Requests that finished together come back together, so arrivals come in cohorts of
k = 1 + κ·(n − 1)^γ (κ, cohort_fraction, fitted per engine; γ = COHORT_GROWTH, 0.7). Cohorts grow more
slowly than the load: one larger than a step's budget finishes its prompts over several steps and so
comes back split, and the splits re-merge only in part. γ was chosen by two-fold cross-validation on the
H100 calibration set (scripts/choose_cohort_growth.py prints the sweep over 0.5-1): 0.7 gives vLLM its
lowest out-of-fit TTFT median (16.3%, against 20.2% for γ = 1, the earlier linear law, which put its TTFT
at 8-16 clients at ~0.65x) and its lowest decision regret (5.7% against 11.8%); for TensorRT-LLM, a
calibration source tpplan does not plan for, it is about neutral on the median (13.8% against 13.5%) and
worse on the tail (p90 72.5% against 69.5%; 9 picks that miss their SLO against 6).
A cohort's k·I prompt tokens fill steps of c = min(k·I, B − d) tokens, and q = (λ/k)·T·(k·I / (B − d))
of the steps carry such a chunk:

    TPOT = (1 − q)·step(d decodes) + q·step(d decodes + a prefill chunk)

A new request waits for the part of its cohort ahead of it ((k − 1)/2 prompts) and behind earlier
prefill work (an M/D/1 queue on the budget, utilization ρ = λ·T·I / (B − d)), then its own chunks.
TTFT therefore grows with C and with the others' prompt load; pricing a lone prefill under-predicts
it several-fold at high concurrency. (Cohorts do not stay whole: vLLM at 8 clients × 1024 tokens,
whose prompts all fit one step's budget, measures a TTFT of ~3 lone prefills, not of one 8-prompt step.)

Admission by KV capacity (`slots`): a closed loop at fixed I and O keeps its cohorts in step, so
the sequences resident at once reach full length together and the cache must hold I + O tokens for
each: S = ⌊KV / (I + O)⌋. TensorRT-LLM's GUARANTEED_NO_EVICT reserves exactly that on admission.
vLLM and SGLang allocate blocks as tokens come and admit up to ⌊KV / I⌋ prompts; the surplus over
S is preempted as the cache fills and recomputed (vLLM V1's only preemption mode) when readmitted:
each completed request carries (A − S)/S recomputes of ~I + O/2 tokens of extra prefill. Clients
beyond S wait: Little's law over the whole loop, W = C/λ − r − L_p − (O−1)·TPOT, the queue.
The equations are solved together by damped fixed-point iteration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..specs import Basis
from .params import Params
from .step import Instance, StepCost, step_cost
from .work import Batch

MAX_ITERATIONS, TOLERANCE, DAMPING = 200, 1e-4, 0.5
MAX_PREFILL_UTILIZATION = 0.98
COHORT_GROWTH = 0.7  # γ: see the module docstring


@dataclass(frozen=True)
class EngineConfig:
    """The scheduler knobs that shape the steady state."""

    name: str
    max_num_batched_tokens: int  # token budget of one step (chunked prefill)
    max_num_seqs: int
    reserves_full_sequence: bool  # admits a request only if its whole I+O fits (TensorRT-LLM's default)
    source: str
    basis: Basis = "published"  # the engine's own defaults, read from its source; assumed where it has none
    # Sequence slots the engine cannot refill at once when its batch cap equals the client count: a
    # finished request that still holds its slot (TensorRT-LLM's overlap scheduler tears a request
    # down one iteration late, TensorRT-LLM PRs #16278, #18457). Then only C − held of C clients run.
    held_slots: int = 0


@dataclass(frozen=True)
class Load:
    input_tokens: int
    output_tokens: int
    concurrency: float  # clients in flight for this instance


@dataclass(frozen=True)
class SteadyState:
    ttft_ms: float
    tpot_ms: float
    prefill_ms: float
    requests_per_ms: float
    resident: float  # requests in the engine
    slots: int  # most requests the engine holds at once (sequences, KV)
    decode_seqs: float
    prefill_tokens_per_step: float
    prefill_step_fraction: float
    queue_wait_ms: float
    decode_step: StepCost  # a step with decodes only
    mixed_step: StepCost  # a step that also carries a prefill chunk
    converged: bool


def cohort_size(resident: float, *, fraction: float) -> float:
    """Requests that arrive together when `resident` are in the engine: 1 + κ·(n − 1)^γ."""
    return 1.0 + fraction * max(0.0, resident - 1.0) ** COHORT_GROWTH


def slots(kv_tokens: int, load: Load, *, engine: EngineConfig) -> int:
    """Requests the engine runs at once: its sequence cap, and what the KV cache holds with every
    resident sequence at full length I + O (see the module docstring: cohorts grow together)."""
    per_seq = load.input_tokens + load.output_tokens
    return max(0, min(engine.max_num_seqs, math.floor(kv_tokens / per_seq)))


def recomputes_per_request(kv_tokens: int, load: Load, *, engine: EngineConfig) -> float:
    """Preemptions (each a recompute of the sequence so far) per completed request, for an engine
    that allocates KV on demand: it admits A = ⌊KV / I⌋ prompts (at most its sequence cap and the
    clients), of which only S = slots(...) can finish together; the other A − S are evicted."""
    if engine.reserves_full_sequence:
        return 0.0
    full = slots(kv_tokens, load, engine=engine)
    admitted = min(engine.max_num_seqs, load.concurrency, math.floor(kv_tokens / max(1, load.input_tokens)))
    return max(0.0, admitted - full) / full if full else 0.0


def steady_state(
    inst: Instance,
    params: Params,
    *,
    engine: EngineConfig,
    load: Load,
    kv_tokens: int,
    start: tuple[float, float] | None = None,
) -> SteadyState:
    """Solve the closed loop; `start` = (tpot_ms, prefill_ms) of a nearby solution speeds up fitting."""
    over = params.overhead(inst.engine)
    request_ms, cohort_fraction = over.request_ms.value, over.cohort_fraction.value
    i_tok, o_tok, clients = load.input_tokens, load.output_tokens, load.concurrency
    cap = (
        slots(kv_tokens, load, engine=engine) or engine.max_num_seqs
    )  # no room at all: price it as if there were
    if engine.held_slots and clients > engine.held_slots:
        cap = min(cap, math.ceil(clients) - engine.held_slots)
    budget = engine.max_num_batched_tokens
    # prompt tokens prefilled per completed request: its own, plus what preemptions recompute
    i_load = i_tok + recomputes_per_request(kv_tokens, load, engine=engine) * (i_tok + o_tok / 2)
    ctx_decode, ctx_prefill = i_tok + o_tok / 2, i_tok / 2

    def decode_only(d: float) -> StepCost:
        return step_cost(inst, params, batch=Batch(d, ctx_decode, 0.0, ctx_prefill, d))

    def with_prefill(d: float, tokens: float) -> StepCost:
        return step_cost(inst, params, batch=Batch(d, ctx_decode, tokens, ctx_prefill, d + 1))

    if start:
        tpot, prefill = start
    else:
        tpot = decode_only(min(clients, cap)).time_ms
        prefill = with_prefill(0.0, min(i_tok, budget)).time_ms * math.ceil(i_tok / budget)
    converged = False
    for _ in range(MAX_ITERATIONS):
        decode_ms = (o_tok - 1) * tpot
        cycle = prefill + decode_ms
        resident = min(float(cap), clients * cycle / (request_ms + cycle))
        rate = resident / cycle
        d = max(1.0, resident * decode_ms / cycle) if o_tok > 1 else 0.0
        avail = max(1.0, budget - d)
        # Requests that finish together come back together: arrivals come in cohorts.
        cohort = cohort_size(resident, fraction=cohort_fraction)
        burst_steps = max(1.0, cohort * i_load / avail)
        q = min(1.0, rate / cohort * tpot * burst_steps)
        tokens_per_step = rate * tpot * i_load
        chunk = min(cohort * i_tok, avail)
        t_decode, t_mixed = decode_only(d), with_prefill(d, max(chunk, tokens_per_step / q if q else chunk))
        new_tpot = (1 - q) * t_decode.time_ms + q * t_mixed.time_ms
        rho = min(MAX_PREFILL_UTILIZATION, tokens_per_step / avail)
        wait_steps = rho * burst_steps / (2 * (1 - rho))
        own_steps = max(math.ceil(i_tok / avail), (cohort + 1) / 2 * i_tok / avail)  # behind half its cohort
        misalign = 0.5 * new_tpot if clients > 1 else 0.0  # arrives mid-step when others are running
        new_prefill = (own_steps + wait_steps) * t_mixed.time_ms + misalign
        change = abs(new_tpot - tpot) / tpot + abs(new_prefill - prefill) / prefill
        tpot += DAMPING * (new_tpot - tpot)
        prefill += DAMPING * (new_prefill - prefill)
        if change < TOLERANCE:
            converged = True
            break
    cycle = prefill + (o_tok - 1) * tpot
    resident = min(float(cap), clients * cycle / (request_ms + cycle))
    rate = resident / cycle
    wait = max(0.0, clients / rate - request_ms - cycle)
    return SteadyState(
        ttft_ms=request_ms + wait + prefill,
        tpot_ms=tpot,
        prefill_ms=prefill,
        requests_per_ms=rate,
        resident=resident,
        slots=cap,
        decode_seqs=d,
        prefill_tokens_per_step=tokens_per_step,
        prefill_step_fraction=q,
        queue_wait_ms=wait,
        decode_step=t_decode,
        mixed_step=t_mixed,
        converged=converged,
    )
