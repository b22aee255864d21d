"""`tpplan estimate`: the cost model's all-reduce and serving estimates for one layout (costmodel.deploy
places it and applies the engine's limits)."""

from __future__ import annotations

from .. import costmodel
from ..records import AllReduceEstimate, Layout, ServeEstimate
from ..specs import ModelSpec, Workload
from .refs import Ref, check_context, load_model, load_profile


def estimate_allreduce(profile_ref: Ref, *, nbytes: int, ranks: int) -> AllReduceEstimate:
    """One all-reduce over `ranks` GPUs of the profile, placed from GPU 0 (more than a node: several nodes)."""
    return costmodel.allreduce_on(load_profile(profile_ref), nbytes=nbytes, ranks=ranks)


def estimate_serve(
    model_ref: Ref | ModelSpec, profile_ref: Ref, *, layout: Layout, workload: Workload, engine: str = "vllm"
) -> ServeEstimate:
    """Serving `workload` on `layout` (replicas share the concurrency evenly); refuses a request longer
    than the model's context."""
    model = model_ref if isinstance(model_ref, ModelSpec) else load_model(model_ref)
    check_context(model, workload.sequence_tokens, "input_tokens + output_tokens")
    return costmodel.price_layout(model, load_profile(profile_ref), layout, workload, engine=engine)
