"""What each command is asked, as records: every bound a value must meet is a `Field` here, so a bad
value is refused once, by pydantic, naming the field (`slo_tpot_ms`). The CLI names the flag the field
came from (cli/flags.py); a caller of tpplan.api sees the field.

Lists may be given as one comma-separated string ("1,2,4"): `comma_list` is the one parser of them.
Checks that need the model or the machine (a context longer than the model's, a TP the engine refuses)
stay with the stage that knows them.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator

from ..specs.base import Frozen
from ..specs.model import HF_REPO_ID_PATTERN, HfRepoId

Engine = Literal["vllm", "megatron", "sglang"]
ServeDtype = Literal["bf16", "fp16", "fp8"]
KvDtype = Literal["auto", "bf16", "fp16", "fp8"]


def comma_list(value: Any, *, positive_ints: bool = False) -> Any:
    """'bf16, fp8' -> ['bf16', 'fp8']; with `positive_ints`, '1,2,4' -> [1, 2, 4] and any other item
    refused by name. A list passes through (each item is then checked by its type and bounds)."""
    if isinstance(value, tuple):
        return list(value)
    if not isinstance(value, str):
        return value
    items = [t.strip() for t in value.split(",") if t.strip()]
    if not positive_ints:
        return items
    for item in items:
        if not item.isdigit() or int(item) < 1:
            raise ValueError(
                f"{item!r} in {value!r} is not a positive integer; expected a comma-separated list such as 1,2,4"
            )
    return [int(t) for t in items]


def _positive_ints(value: Any) -> Any:
    return comma_list(value, positive_ints=True)


def _sorted_unique(values: list) -> list:
    return sorted(set(values))


def _unique(values: list) -> list:
    return list(dict.fromkeys(values))


def _finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    return value


Count = Annotated[int, Field(ge=1)]
Degrees = Annotated[
    list[Annotated[int, Field(ge=1, le=100_000)]],
    BeforeValidator(_positive_ints),
    AfterValidator(_sorted_unique),
    Field(min_length=1),
]
Milliseconds = Annotated[float | None, Field(gt=0), AfterValidator(_finite)]
Finite = Annotated[float, AfterValidator(_finite)]
# The budget's upper bound is refs.check_budget's: its message says what to do instead.
Budget = Annotated[int | None, Field(ge=1)]


def _names(kind: Any) -> Any:
    """A list of `kind`, given as a list or 'a,b'; duplicates dropped, order kept."""
    return Annotated[list[kind], BeforeValidator(comma_list), AfterValidator(_unique), Field(min_length=1)]


Names = _names(str)
ServeDtypes = _names(ServeDtype)
KvDtypes = _names(KvDtype)


def _holds_a_request(cls: type, value: int | None, info: ValidationInfo) -> int | None:
    """A context (`max_model_len`) at least one request long: the bound search and estimate share."""
    isl, osl = info.data.get("input_tokens"), info.data.get("output_tokens")
    if value is not None and isl and osl and value < isl + osl:
        raise ValueError(
            f"{value} is shorter than one request ({isl} + {osl} tokens); expected at least {isl + osl}"
        )
    return value


class SearchQuestion(Frozen):
    """`tpplan search`: what is asked (the model and profiles are loaded by the façade)."""

    input_tokens: Count = Field(description="input (prompt) tokens per request")
    output_tokens: Count = Field(description="output tokens per request")
    gpus: Budget = Field(None, description="GPU budget per profile (default: all of the profile's GPUs)")
    concurrency: Count | None = Field(
        None, description="clients in flight (default: replicas x max_num_seqs)"
    )
    slo_ttft_ms: Milliseconds = Field(None, description="time-to-first-token bound, ms")
    slo_tpot_ms: Milliseconds = Field(None, description="time-per-output-token bound, ms")
    engine: Engine = Field("vllm", description="the serving engine whose rules and defaults apply")
    calibration: list[str] = Field(default_factory=list, description="[PROFILE=]FILE measurements to fit")
    pareto: bool = Field(False, description="NSGA-II over tokens/USD, TPOT and TTFT instead of TPE")
    disaggregated: bool = Field(
        True, description="also weigh disaggregated prefill/decode deployments (vLLM, SGLang; GPU profiles)"
    )
    dtypes: ServeDtypes | None = Field(None, description="weight dtypes to try (default: the model's)")
    kv_cache_dtypes: KvDtypes | None = Field(None, description="KV-cache dtypes to try (default: auto)")
    max_model_len: Count | None = Field(None, description="context to reserve (default: input + output)")
    tp: Degrees | None = Field(None, description="only these TP degrees (default: all the engine accepts)")
    pp: Degrees | None = Field(None, description="only these PP depths (default: all)")
    # Each item's bounds are topology.profile.user_price's; prices.parse_prices pairs them with profiles.
    prices: Annotated[list[str], BeforeValidator(comma_list)] = Field(
        default_factory=list, description="[PROFILE=]USD per GPU-hour replacing the profiles' prices"
    )

    _holds_a_request = field_validator("max_model_len")(_holds_a_request)


class ServeEstimateRequest(Frozen):
    """`tpplan estimate serve`: what the layout and workload records do not hold."""

    input_tokens: Count = Field(description="input (prompt) tokens per request")
    output_tokens: Count = Field(description="output tokens per request")
    max_model_len: Count | None = Field(
        None, description="context one sequence must fit (default: input + output)"
    )
    # Its bounds are topology.profile.user_price's, which says what a price is.
    price_usd_per_gpu_hour: float | None = Field(None, description="price of one GPU-hour, USD")

    _holds_a_request = field_validator("max_model_len")(_holds_a_request)


SERVED_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,199}$"


def _shaped(pattern: str, what: str) -> Any:
    """A string refused in words (what it should look like) rather than as a regular expression."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and not re.fullmatch(pattern, value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return BeforeValidator(check)


RepoId = Annotated[
    HfRepoId,
    _shaped(HF_REPO_ID_PATTERN, "a Hugging Face repo id; expected ORG/NAME, e.g. meta-llama/Llama-3.1-8B"),
]
# What clients put in a request's "model" field: one word (vLLM/SGLang --served-model-name).
ServedName = Annotated[
    str,
    Field(pattern=SERVED_NAME_PATTERN),
    _shaped(SERVED_NAME_PATTERN, "a model name; expected one word of letters, digits and _ . : / -"),
]


class ServedAs(Frozen):
    """`tpplan search` / `tpplan emit`: the repo id the plan serves and the name clients use."""

    hf_id: RepoId | None = Field(None, description="Hugging Face repo id (org/name) the engine loads")
    served_model: ServedName | None = Field(None, description="the model name clients send")


class SearchRun(Frozen):
    """`tpplan search`: how the study runs."""

    trials: Count | None = Field(None, description="trials to run (default: max(200, a tenth of the space))")
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = Field(0, description="the sampler's seed")


class SweepRequest(Frozen):
    """`tpplan sweep`: the layouts and settings to measure, not yet checked against the model or machine."""

    tp: Degrees | None = Field(None, description="TP degrees (default: powers of two this machine runs)")
    pp: Degrees = Field([1], description="pipeline-parallel degrees")
    replicas: Degrees = Field([1], description="concurrent instances per case")
    # The stage checks the names (sweep.request.parse_dtypes / parse_heads): it says why fp8 is not one.
    dtypes: Names | None = Field(None, description="dtypes to run (default: the model's, else bf16)")
    heads: Names | None = Field(None, description="head splits to run (default: what engines accept)")
    tokens: Count = Field(128, description="tokens per sequence in a step")
    batch: Count = Field(2, description="sequences per step")
    layers: Count | None = Field(
        None, description="real-width layers to run (default: what fits and is quick)"
    )
    warmup: Annotated[int, Field(ge=0)] = Field(5, description="untimed iterations (nccl-tests: 5)")
    iters: Count = Field(20, description="timed iterations (nccl-tests: 20)")
    timeout_s: Annotated[Finite, Field(gt=0)] = Field(60.0, description="seconds a case may take")
    atol: Annotated[Finite, Field(ge=0)] | None = Field(
        None, description="drift tolerance vs TP=1 (default: the dtype's)"
    )
    rtol: Annotated[Finite, Field(ge=0)] | None = Field(None, description="relative drift tolerance")
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = Field(0, description="weights' and inputs' seed")


class CandidatesRequest(Frozen):
    """`tpplan candidates`: the layouts of a budget to list."""

    engine: Engine = Field("vllm", description="the engine whose rules judge each layout")
    gpus: Budget = Field(None, description="GPU budget (default: all of the profile's GPUs)")
    max_model_len: Count | None = Field(None, description="context one sequence must fit")
    full_budget: bool = Field(False, description="only layouts that use every GPU of the budget")
    tp: Degrees | None = Field(None, description="tensor-parallel degrees to list (default: all)")
    pp: Degrees | None = Field(None, description="pipeline-parallel degrees to list (default: all)")
    dtype: ServeDtype | None = Field(
        None, description="weight dtype the memory fit uses (default: the model's)"
    )
    # Its bounds are topology.profile.user_price's, which says what a price is.
    price_usd_per_gpu_hour: float | None = Field(None, description="price of one GPU-hour, USD")


class EmitRequest(Frozen):
    """`tpplan emit`: how to write a plan's launch commands."""

    engine: Engine | None = Field(None, description="target engine (default: the plan's own)")
    fmt: Literal["cli", "yaml"] = Field("cli", description="shell commands or an engine --config file")
    replica_mode: Literal["instances", "dp"] = Field(
        "instances", description="replicas as separate servers, or one server's data parallelism"
    )
    # The top of the range is the emit stage's: it knows how many ports the replicas take.
    port: Count | None = Field(None, description="first server port")
    node_addrs: tuple[str, ...] = Field(
        (), description="addresses of node 0, 1, ... (a multi-node layout needs them)"
    )

    @field_validator("node_addrs")
    @classmethod
    def _no_empty_address(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not a for a in value):
            raise ValueError(
                f"{','.join(value)!r} has an empty address; expected addresses of node 0, 1, ... separated by commas"
            )
        return value


class ReportRequest(Frozen):
    """`tpplan report`: which renderings of a run directory to write."""

    formats: Annotated[list[Literal["md", "html"]], Field(min_length=1)] = Field(
        default_factory=lambda: ["md"], description="md and/or html"
    )
    csv: bool = Field(False, description="also write each table as CSV")


class DetectRequest(Frozen):
    """`tpplan detect`: what the machine reading may not find by itself."""

    nodes: Count | None = Field(None, description="identical nodes of this kind (default: 1)")
    # Its bounds are topology.profile.user_price's, which says what a price is.
    price_usd_per_gpu_hour: float | None = Field(None, description="price of one GPU-hour, USD")


class BenchRequest(Frozen):
    """`tpplan bench`: which layouts and loads to run on the real engine."""

    top: Count | None = Field(None, description="layouts to bench (the winner first)")
    concurrency: Annotated[list[Count], BeforeValidator(_positive_ints), AfterValidator(_sorted_unique)] = (
        Field(default_factory=lambda: [1, 4, 16], description="client concurrencies to run")
    )
    isl: Count | None = Field(None, description="input tokens (default: the plan's)")
    osl: Count | None = Field(None, description="output tokens (default: the plan's)")
    port: Annotated[int, Field(ge=1, le=65535)] | None = Field(None, description="server port")
    start_timeout_s: Annotated[Finite, Field(gt=0)] = Field(
        600.0, description="seconds for the server to start"
    )
    client_timeout_s: Annotated[Finite, Field(gt=0)] = Field(600.0, description="seconds for one client run")
