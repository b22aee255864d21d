"""The cost model (pure Python, no torch): step times, collectives, serving steady state, calibration.

    estimate_allreduce(profile, bytes, ranks, fabric)          -> AllReduceEstimate
    estimate_serve(model, profile, layout, workload, engine, deployment) -> ServeEstimate
    read_source(path) + calibrate_nccl / calibrate_sweep / calibrate_serving -> calibrated profile, SourceFit

Placement and memory come from the candidates stage through the façade (tpplan/api.py).
"""

from .calibrate import (
    CALIBRATION_ENGINES,
    MEMORY_PROXY,
    calibrate_nccl,
    calibrate_serving,
    calibrate_sweep,
    fitted_parameters,
    serving_case,
    sweep_case,
)
from .estimate import Deployment, estimate_allreduce, estimate_serve
from .params import Params
from .profile_fit import fit_allreduce, with_allreduce
from .serving import EngineConfig
from .sources import NCCL_TESTS, SERVING, SWEEP, check_device, read_source

__all__ = [
    "CALIBRATION_ENGINES",
    "MEMORY_PROXY",
    "NCCL_TESTS",
    "SERVING",
    "SWEEP",
    "Deployment",
    "EngineConfig",
    "Params",
    "calibrate_nccl",
    "calibrate_serving",
    "calibrate_sweep",
    "estimate_allreduce",
    "estimate_serve",
    "fit_allreduce",
    "fitted_parameters",
    "check_device",
    "read_source",
    "serving_case",
    "sweep_case",
    "with_allreduce",
]
