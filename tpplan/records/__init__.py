"""Records passed between pipeline stages (frozen pydantic models; derived values are properties).

One module per stage that produces them; import them from here (`from tpplan.records import Plan`).
"""

from .bench import BENCH_KIND, BenchMetrics, BenchPredicted, BenchRecord, BenchStatus
from .costmodel import (
    AllReduceEstimate,
    Calibration,
    Detection,
    ErrorStats,
    ServeEstimate,
    SourceFit,
    StepBreakdown,
)
from .emit import EnvName, EnvRef, Launch, Option, Process, Word
from .layout import Candidate, Degree, DeploymentKind, Layout, TpFabric
from .provenance import Provenance
from .reason import Reason, ReasonKind
from .report import FigureData, Report, Series, SeriesSource
from .search import Basis, Decision, Disaggregated, Neighbour, Plan, ScoredConfig, SearchResult
from .sweep import (
    AllReduceStats,
    Drift,
    HeadsMode,
    Latency,
    Measurement,
    RankTiming,
    Stats,
    SweepDtype,
    SweepStatus,
)

__all__ = [
    "BENCH_KIND",
    "BenchMetrics",
    "BenchPredicted",
    "BenchRecord",
    "BenchStatus",
    "AllReduceEstimate",
    "AllReduceStats",
    "Basis",
    "Calibration",
    "Candidate",
    "Degree",
    "DeploymentKind",
    "Detection",
    "Disaggregated",
    "Drift",
    "EnvName",
    "EnvRef",
    "ErrorStats",
    "FigureData",
    "HeadsMode",
    "Latency",
    "Launch",
    "Layout",
    "Measurement",
    "Decision",
    "Neighbour",
    "Option",
    "Plan",
    "Process",
    "Provenance",
    "RankTiming",
    "Reason",
    "ReasonKind",
    "Report",
    "ScoredConfig",
    "SearchResult",
    "Series",
    "SeriesSource",
    "ServeEstimate",
    "SourceFit",
    "Stats",
    "StepBreakdown",
    "SweepDtype",
    "SweepStatus",
    "TpFabric",
    "Word",
]
