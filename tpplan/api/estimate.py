"""`tpplan estimate`: the cost model's all-reduce and serving estimates for one layout (costmodel.deploy
places it and applies the engine's limits)."""

from __future__ import annotations

from .. import costmodel, io
from ..prices import priced
from ..records import AllReduceEstimate, Layout, ServeEstimate
from ..records.requests import ServeEstimateRequest
from ..specs import ModelSpec, Workload
from .refs import Ref, check_context, load_model, load_profile


def estimate_allreduce(profile_ref: Ref, *, nbytes: int, ranks: int) -> AllReduceEstimate:
    """One all-reduce over `ranks` GPUs of the profile, placed from GPU 0 (more than a node: several nodes)."""
    return costmodel.allreduce_on(load_profile(profile_ref), nbytes=nbytes, ranks=ranks)


def estimate_serve(
    model_ref: Ref | ModelSpec,
    profile_ref: Ref,
    *,
    layout: Layout,
    workload: Workload,
    engine: str = "vllm",
    max_model_len: int | None = None,
    price_usd_per_gpu_hour: float | None = None,
) -> ServeEstimate:
    """Serving `workload` on `layout` (replicas share the concurrency evenly); refuses a request longer
    than the model's context. `max_model_len`: the context one sequence must fit in the KV cache
    (default: a request's input + output tokens); `price_usd_per_gpu_hour` replaces the profile's."""
    req = io.validate_request(
        ServeEstimateRequest,
        {
            "input_tokens": workload.input_tokens,
            "output_tokens": workload.output_tokens,
            "max_model_len": max_model_len,
            "price_usd_per_gpu_hour": price_usd_per_gpu_hour,
        },
    )
    model = model_ref if isinstance(model_ref, ModelSpec) else load_model(model_ref)
    context = req.max_model_len or workload.sequence_tokens
    check_context(model, context, "max_model_len" if req.max_model_len else "input_tokens + output_tokens")
    profile = priced(load_profile(profile_ref), req.price_usd_per_gpu_hour)
    return costmodel.price_layout(
        model, profile, layout=layout, workload=workload, engine=engine, max_model_len=context
    )
