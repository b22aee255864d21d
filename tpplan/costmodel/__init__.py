"""The cost model (pure Python, no torch): step times, collectives, serving steady state, calibration.

estimate_allreduce(profile, nbytes, ranks=..., fabric=...)  -> AllReduceEstimate
price_deployment(model, profile, layout=..., workload=..., engine=..., dep=...) -> ServeEstimate
read_source(path) + calibrate_nccl / calibrate_sweep / calibrate_serving -> calibrated profile, SourceFit
deploy.price_layout(model, profile, layout=..., workload=..., engine=...) -> ServeEstimate of a layout as the
    engine deploys it (placement and memory judged once by the candidates stage)
fit_sources.calibrate / evaluate_serving    measurement files -> calibrated profile / predictions
measured.apply_calibration                  `search --calibration` entries -> profiles, measured points
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
from .deploy import allreduce_on, check_dtype, deployment, engine_config, known_engine, price_layout
from .estimate import Deployment, estimate_allreduce, price_deployment
from .fit_sources import calibrate, evaluate_serving
from .measured import Measured, apply_calibration, with_measured
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
    "Measured",
    "Params",
    "allreduce_on",
    "apply_calibration",
    "calibrate",
    "calibrate_nccl",
    "calibrate_serving",
    "calibrate_sweep",
    "deployment",
    "engine_config",
    "estimate_allreduce",
    "evaluate_serving",
    "fit_allreduce",
    "fitted_parameters",
    "known_engine",
    "price_deployment",
    "price_layout",
    "check_dtype",
    "check_device",
    "read_source",
    "serving_case",
    "sweep_case",
    "with_allreduce",
    "with_measured",
]
