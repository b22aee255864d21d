"""`tpplan candidates`: every layout of the GPU budget on a profile, judged by the candidates stage."""

from __future__ import annotations

from .. import candidates as candidates_stage
from .. import costmodel, io
from ..candidates import why_none_valid  # noqa: F401  (the CLI reads it here)
from ..errors import ConfigError
from ..prices import priced
from ..records import Candidate
from ..records.requests import CandidatesRequest
from ..specs import HardwareProfile, ModelSpec
from .refs import Ref, check_budget, check_context, load_model, load_profile


def list_candidates(
    model_ref: Ref,
    profile_ref: Ref,
    *,
    engine: str = "vllm",
    gpus: int | None = None,
    max_model_len: int | None = None,
    full_budget: bool = False,
    tp: list[int] | str | None = None,
    pp: list[int] | str | None = None,
    dtype: str | None = None,
    price_usd_per_gpu_hour: float | None = None,
) -> tuple[ModelSpec, HardwareProfile, int, list[Candidate]]:
    """Every layout of the GPU budget for `engine`; `tp`/`pp` (lists, or '1,2,4') restrict the degrees
    listed; `dtype` is the weight dtype the memory fit uses (the model returned is served in it);
    `price_usd_per_gpu_hour` replaces the profile's price (the profile returned carries it)."""
    asked = {"engine": engine, "gpus": gpus, "max_model_len": max_model_len, "full_budget": full_budget}
    priced_as = {"dtype": dtype, "price_usd_per_gpu_hour": price_usd_per_gpu_hour}
    req = io.validate_request(CandidatesRequest, asked | {"tp": tp, "pp": pp} | priced_as)
    model, profile = load_model(model_ref), load_profile(profile_ref)
    profile = priced(profile, req.price_usd_per_gpu_hour)
    if req.dtype:
        costmodel.check_dtype(profile, req.dtype)
        # fp8 weights weigh half of bf16 ones; an `auto` KV cache keeps the activation dtype (as emit does)
        model = model.model_copy(update={"dtype": req.dtype})
    check_context(model, req.max_model_len)
    budget = req.gpus or profile.total_gpus
    check_budget(budget)
    for name, values in (("tp", req.tp), ("pp", req.pp)):
        too_big = [v for v in values or [] if v > budget]
        if too_big:
            of = "the gpus asked for" if req.gpus else f"{profile.total_gpus} GPUs of profile {profile.name}"
            raise ConfigError(
                f"{too_big[0]} is larger than the GPU budget ({budget}: {of})",
                field=name,
                expected=f"at most {budget}, or a larger GPU budget",
            )
    found = candidates_stage.candidates(
        model,
        profile,
        engine=req.engine,
        budget_gpus=budget,
        max_model_len=req.max_model_len,
        full_budget=req.full_budget,
    )
    found = [c for c in found if (not req.tp or c.tp in req.tp) and (not req.pp or c.pp in req.pp)]
    return model, profile, budget, found
