"""What every command of the façade shares: input references, loading, the checks of context and
budget (the engine name is a request field: records/requests.py). The one api module the others import; it imports no api module.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import io
from ..errors import ConfigError
from ..records import Plan
from ..specs import HardwareProfile, ModelSpec

Ref = str | os.PathLike


def load_model(ref: Ref) -> ModelSpec:
    return io.load_model(ref)


def load_profile(ref: Ref) -> HardwareProfile:
    return io.load_profile(ref)


def load_plan(ref: Ref) -> Plan:
    return io.load_plan(ref)


def list_profiles() -> list[tuple[Path, HardwareProfile]]:
    return io.bundled_profiles()


def check_context(model: ModelSpec, max_model_len: int | None, field: str = "max_model_len") -> None:
    """The engines refuse a context longer than the model's max_position_embeddings (vLLM's engine
    config rejects a too-long --max-model-len: reference/engines/README.md, "engine config"); say so
    before any layout is judged, not after `tpplan emit` refuses the plan."""
    if max_model_len is not None and max_model_len > model.max_position_embeddings:
        raise ConfigError(
            f"{max_model_len} tokens exceed {model.name}'s context (max_position_embeddings "
            f"{model.max_position_embeddings})",
            field=field,
            expected=f"at most {model.max_position_embeddings} tokens",
        )


# Enumerating every layout of a budget grows as budget x log(budget): 1024 GPUs is ~26k layouts in
# seconds, 4096 about a minute. A larger budget is several deployments: plan one and add replicas.
MAX_BUDGET_GPUS = 4096


def check_budget(gpus: int | None) -> None:
    if gpus is not None and gpus > MAX_BUDGET_GPUS:
        raise ConfigError(
            f"{gpus} GPUs is more than tpplan enumerates layouts for",
            field="gpus",
            expected=f"at most {MAX_BUDGET_GPUS} (for a larger fleet, plan one deployment and add replicas)",
        )
