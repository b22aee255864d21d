"""The façade: one module per command. Each loads and validates its input once, calls the stages
(topology, candidates, sweep, costmodel, search, emit, report, enginebench) and returns records.
The CLI, the demo, tests and scripts call these functions; stages never import tpplan.api.

Every module here imports stages, specs, records, io and errors, and of the api only `refs` (the
shared loading and checks). Names re-exported below are the commands' functions: `tpplan.api.search`
is the function; its module's helpers are imported as `from tpplan.api.search import prepare`.
"""

from .bench import bench
from .calibrate import calibrate, evaluate_serving
from .candidates import list_candidates
from .detect import detect
from .emit import emit_plan
from .estimate import estimate_allreduce, estimate_serve
from .refs import (
    Ref,
    check_budget,
    check_context,
    list_profiles,
    load_model,
    load_plan,
    load_profile,
)
from .report import report
from .search import search
from .sweep import default_sweep_profile, sweep

__all__ = [
    "Ref",
    "bench",
    "calibrate",
    "check_budget",
    "check_context",
    "default_sweep_profile",
    "detect",
    "emit_plan",
    "estimate_allreduce",
    "estimate_serve",
    "evaluate_serving",
    "list_profiles",
    "load_model",
    "load_plan",
    "load_profile",
    "list_candidates",
    "report",
    "search",
    "sweep",
]
