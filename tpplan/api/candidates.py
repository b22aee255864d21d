"""`tpplan candidates`: every layout of the GPU budget on a profile, judged by the candidates stage."""

from __future__ import annotations

from .. import candidates as candidates_stage
from ..errors import LayoutError
from ..records import Candidate
from ..specs import HardwareProfile, ModelSpec
from .refs import Ref, check_budget, check_context, check_engine, load_model, load_profile


def plan_candidates(
    model_ref: Ref,
    profile_ref: Ref,
    engine: str = "vllm",
    gpus: int | None = None,
    max_model_len: int | None = None,
    full_budget: bool = False,
    tp: list[int] | None = None,
    pp: list[int] | None = None,
) -> tuple[ModelSpec, HardwareProfile, int, list[Candidate]]:
    """Every layout of the GPU budget for `engine`; `tp`/`pp` restrict the degrees listed."""
    eng = check_engine(engine)
    model, profile = load_model(model_ref), load_profile(profile_ref)
    check_context(model, max_model_len)
    check_budget(gpus or profile.total_gpus)
    budget = gpus or profile.total_gpus
    for name, values in (("--tp", tp), ("--pp", pp)):
        too_big = [v for v in values or [] if v > budget]
        if too_big:
            raise LayoutError(
                f"{name} {too_big[0]} is larger than the GPU budget ({budget}: "
                f"{'--gpus' if gpus else f'{profile.total_gpus} GPUs of profile {profile.name}'}); "
                f"use {name} <= {budget} or raise --gpus"
            )
    found = candidates_stage.candidates(model, profile, eng, budget, max_model_len, full_budget)
    found = [c for c in found if (not tp or c.tp in tp) and (not pp or c.pp in pp)]
    return model, profile, budget, found
