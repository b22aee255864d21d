"""The cost model's parameters: the profile's fitted `efficiency:` values where present, else priors.

Every number the model uses is a `Param` with a unit, a source and a basis, so an estimate can say
which of its inputs were fitted, which were taken from the profile, and which are priors. The priors
below are the documented defaults for profiles without an `efficiency:` section.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from ..records import Provenance
from ..specs import AllReduceCurve, AllReduceFit, Basis, HardwareProfile, Sourced
from .kernels import kernel_tables


@dataclass(frozen=True)
class Param:
    name: str
    value: float
    unit: str
    source: str
    basis: Basis

    def provenance(self, named: bool = False) -> Provenance:
        """`named`: the value says which parameter it is (for a list without keys)."""
        value = f"{self.name} {self.value:.4g} {self.unit}" if named else f"{self.value:.4g} {self.unit}"
        return Provenance(value=value.rstrip(), basis=self.basis, source=self.source)


def from_sourced(name: str, unit: str, *, q: Sourced) -> Param:
    return Param(name, q.value, unit, q.source, q.basis)


def of_sourced(q: Sourced) -> Provenance:
    """A profile number's provenance, as an estimate or a calibration lists it."""
    return Provenance(value=f"{q.value:g}", basis=q.basis, source=q.source)


# ---- priors ----------------------------------------------------------------------------------
GEMM_FRACTION = Param(
    "gemm_fraction",
    0.70,
    "of peak",
    "reference/hardware.md §1 (Azure AI-benchmarking-guide): A100 cuBLASLt 81% of peak at 8192^3, "
    "H100 FP8 65-70%; 0.70 taken between",
    "published",
)
HBM_FRACTION = Param(
    "hbm_fraction",
    0.85,
    "of peak",
    "reference/hardware.md §1 (Azure AI-benchmarking-guide): HBM stream A100 79-86%, H100 87-95%, GB200 92%",
    "published",
)
# A CPU rank (gloo backend) has neither cuBLAS nor HBM: the GPU figures above are no source for it.
# The same fractions serve as a starting point for calibration, labelled as what they are.
CPU_GEMM_FRACTION = Param(
    "gemm_fraction",
    GEMM_FRACTION.value,
    "of peak",
    "assumed: the GPU prior's value as a starting point; no published figure for a CPU rank's matmul "
    "efficiency (calibrate from a sweep: tpplan calibrate results.jsonl)",
    "assumed",
)
CPU_HBM_FRACTION = Param(
    "hbm_fraction",
    HBM_FRACTION.value,
    "of peak",
    "assumed: the GPU prior's value as a starting point; a CPU rank streams from DRAM, and no published "
    "figure for its share of the profile's bandwidth applies (calibrate from a sweep)",
    "assumed",
)


def fraction_priors(profile: HardwareProfile) -> tuple[Param, Param]:
    """(gemm_fraction, hbm_fraction) priors: published GPU figures, or assumed for CPU (gloo) ranks."""
    if profile.backend == "gloo":
        return CPU_GEMM_FRACTION, CPU_HBM_FRACTION
    return GEMM_FRACTION, HBM_FRACTION


# Engine software costs when the profile has none fitted for the engine: data, by engine and version,
# with their sources (tpplan/data/engine_overheads.yaml; fitted entries written by fit_defaults.py).
ENGINE_DATA = Path(__file__).resolve().parent.parent / "data" / "engine_overheads.yaml"
OVERHEAD_FIELDS = {
    "step_ms": "ms",
    "per_layer_us": "us",
    "per_seq_us": "us",
    "request_ms": "ms",
    "cohort_fraction": "",
}


@cache
def engine_priors() -> dict[str, dict]:
    return yaml.safe_load(ENGINE_DATA.read_text())["engines"]


def engine_prior(engine: str) -> tuple[dict, str]:
    """(the engine's prior entry, a note): an engine with no entry borrows vLLM's, and says so."""
    data = engine_priors()
    if engine in data:
        return data[engine], ""
    return data["vllm"], f"no entry for engine {engine!r}: vLLM's values; "


def engine_field(entry: dict, name: str) -> tuple[float, str, str]:
    """(value, source, basis) of one field; `same_as` fields take the named engine's, as assumed."""
    q = entry[name]
    if "same_as" in q:
        value, source, _ = engine_field(engine_priors()[q["same_as"]], name)
        return value, f"assumed {q['same_as']}'s value ({q['why']}): {source}", "assumed"
    return q["value"], q["source"], q["basis"]


P2P_ALPHA_US = Param(
    "p2p_alpha_us",
    10.0,
    "us",
    "assumed: p2p write latency ~3 us on DGX-A100 (nccl-tests#123) plus NCCL send/recv launch",
    "assumed",
)
NIC_FRACTION = Param(
    "nic_fraction",
    0.92,
    "of link",
    "NCCL sees 46-48 GB/s per 50 GB/s NDR NIC (NVIDIA/nccl-tests#290)",
    "published",
)
# nccl-tests busbw over NVLink reaches ~78% of the unidirectional link rate (8x A100: 235 of 300 GB/s,
# ml-engineering); NVLS raises it above the link rate for more than 4 GPUs (480 of 450 on 8x H100,
# NVIDIA/nccl#1455); PCIe-only 8-GPU boxes reach 28-35 of 63 GB/s (NVIDIA/nccl#1639).
NVLINK_BUSBW_FRACTION, NVLS_BUSBW_FRACTION, PCIE_BUSBW_FRACTION = 0.78, 1.07, 0.5
# Latency floors: ~10 us for 2 GPUs to ~35 us for 8 without CUDA graphs (hardware.md §3), linear in n.
ALPHA_2_US, ALPHA_PER_RANK_US = 10.0, 25.0 / 6
# The busbw ramp, typical of the curves fitted to the reference tables (scripts/fit_defaults.py): busbw is
# half its peak at the size that takes ~20 us to move at the peak (6-42 us across the A100/H100 fits),
# so a slower link ramps up at smaller messages.
PRIOR_RAMP_US, PRIOR_SHAPE = 20.0, 0.5


def prior_curve(profile: HardwareProfile, fabric: str, *, ranks: int) -> tuple[AllReduceCurve, str]:
    """An all-reduce curve from the profile's link numbers and the published ratios above."""
    if fabric == "nvlink" and profile.nvlink:
        nv = profile.nvlink
        nvls = nv.in_switch_reduction and ranks > 4
        frac = NVLS_BUSBW_FRACTION if nvls else NVLINK_BUSBW_FRACTION
        peak, link = nv.per_gpu_unidir_gbps.value * frac, f"NVLink {nv.per_gpu_unidir_gbps.value:g} GB/s"
    else:
        frac = PCIE_BUSBW_FRACTION
        peak, link = (
            profile.pcie.per_gpu_unidir_gbps.value * frac,
            f"PCIe {profile.pcie.per_gpu_unidir_gbps.value:g} GB/s",
        )
    alpha = ALPHA_2_US + ALPHA_PER_RANK_US * (ranks - 2)
    half = peak * 1e3 * PRIOR_RAMP_US  # bytes moved in PRIOR_RAMP_US at the peak (GB/s = 1e3 B/us)
    curve = AllReduceCurve(
        ranks=ranks, alpha_us=alpha, peak_busbw_gbps=peak, half_bytes=half, shape=PRIOR_SHAPE
    )
    why = (
        f"prior: busbw peak {frac:g} x {link} (nccl-tests ratios, reference/hardware.md §2-3), "
        f"alpha {alpha:.1f} us (hardware.md §3 floors)"
    )
    return curve, why


def curve_for(fit: AllReduceFit, ranks: int) -> AllReduceCurve:
    """The fitted curve at `ranks`: exact, interpolated between measured rank counts (linear in n for
    alpha and shape, in log for bandwidths), or the nearest measured one outside their range."""
    curves = sorted(fit.curves, key=lambda c: c.ranks)
    below = [c for c in curves if c.ranks <= ranks]
    above = [c for c in curves if c.ranks >= ranks]
    if not below:
        return above[0]
    if not above:
        return below[-1]
    lo, hi = below[-1], above[0]
    if lo.ranks == hi.ranks:
        return lo
    w = (ranks - lo.ranks) / (hi.ranks - lo.ranks)

    def lin(a: float, b: float) -> float:
        return a + w * (b - a)

    def geo(a: float, b: float) -> float:
        return a * (b / a) ** w

    return AllReduceCurve(
        ranks=ranks,
        alpha_us=lin(lo.alpha_us, hi.alpha_us),
        peak_busbw_gbps=geo(lo.peak_busbw_gbps, hi.peak_busbw_gbps),
        half_bytes=geo(lo.half_bytes, hi.half_bytes),
        shape=lin(lo.shape, hi.shape),
        points=0,
    )


@dataclass(frozen=True)
class Overhead:
    step_ms: Param
    per_layer_us: Param
    per_seq_us: Param
    request_ms: Param
    cohort_fraction: Param


class Params:
    """Every cost-model parameter for one profile, fitted where the profile has it, else the prior.
    Resolved once per (engine | fabric, implementation, ranks) and cached: the step model asks often."""

    def __init__(self, profile: HardwareProfile) -> None:
        self.profile = profile
        self.eff = profile.efficiency
        e = self.eff
        gemm_prior, hbm_prior = fraction_priors(profile)
        self.gemm_fraction = (
            from_sourced("gemm_fraction", "of peak", q=e.gemm_fraction)
            if e and e.gemm_fraction
            else gemm_prior
        )
        self.hbm_fraction = (
            from_sourced("hbm_fraction", "of peak", q=e.hbm_fraction) if e and e.hbm_fraction else hbm_prior
        )
        # kernel time by shape where the GPU has tables; the fractions above then only serve ops no
        # table covers (fp32 GEMMs) and CPU ranks
        self.kernels = kernel_tables(profile)
        self.p2p_alpha_us = (
            from_sourced("p2p_alpha_us", "us", q=e.p2p_alpha_us) if e and e.p2p_alpha_us else P2P_ALPHA_US
        )
        self._overheads: dict[str, Overhead] = {}
        self._curves: dict[tuple[str, str, int], tuple[AllReduceCurve, str, str] | None] = {}

    def overhead(self, engine: str) -> Overhead:
        if engine not in self._overheads:
            self._overheads[engine] = self._resolve_overhead(engine)
        return self._overheads[engine]

    def _resolve_overhead(self, engine: str) -> Overhead:
        fitted = self.eff.overhead(engine) if self.eff else None
        if fitted:
            return Overhead(
                from_sourced(f"{engine}.step_ms", "ms", q=fitted.step_ms),
                from_sourced(f"{engine}.per_layer_us", "us", q=fitted.per_layer_us),
                from_sourced(f"{engine}.per_seq_us", "us", q=fitted.per_seq_us),
                from_sourced(f"{engine}.request_ms", "ms", q=fitted.request_ms),
                from_sourced(f"{engine}.cohort_fraction", "", q=fitted.cohort_fraction),
            )
        entry, why = engine_prior(engine)
        version = (
            f"{engine} prior ({entry['version']}, {'CUDA graphs' if entry['cuda_graphs'] else 'eager'}): "
        )

        def param(name: str, unit: str) -> Param:
            # a prior is assumed to carry to this profile, even where it was fitted elsewhere (the
            # source says where): "fitted" is kept for numbers fitted on the profile itself
            value, source, basis = engine_field(entry, name)
            return Param(f"{engine}.{name}", value, unit, f"{why}{version}{basis} {source}", "assumed")

        return Overhead(*(param(name, unit) for name, unit in OVERHEAD_FIELDS.items()))

    def allreduce_curve(
        self, fabric: str, implementation: str, *, ranks: int
    ) -> tuple[AllReduceCurve, str, Basis] | None:
        """(curve, source, basis) for this fabric and implementation; None when a custom kernel has no fit."""
        key = (fabric, implementation, ranks)
        if key not in self._curves:
            self._curves[key] = self._resolve_curve(fabric, implementation, ranks)
        return self._curves[key]

    def _resolve_curve(
        self, fabric: str, implementation: str, ranks: int
    ) -> tuple[AllReduceCurve, str, Basis] | None:
        fit = self.eff.allreduce_fit(fabric, implementation) if self.eff else None
        if fit:
            return curve_for(fit, ranks), fit.source, fit.basis
        if implementation == "custom":
            return None
        curve, why = prior_curve(self.profile, fabric, ranks=ranks)
        return curve, why, "assumed"
