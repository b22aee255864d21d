"""`tpplan calibrate`: fit a profile's efficiency parameters to measurement files (costmodel.fit_sources),
and how well a profile predicts measured serving points."""

from __future__ import annotations

from .. import costmodel
from ..records import Calibration
from ..specs import HardwareProfile
from .refs import Ref, load_profile


def _profile(ref: Ref | HardwareProfile) -> HardwareProfile:
    return ref if isinstance(ref, HardwareProfile) else load_profile(ref)


def calibrate(
    source_refs: list[Ref], profile_ref: Ref | HardwareProfile, *, out: Ref | None = None, **options
) -> tuple[Calibration, HardwareProfile]:
    """Fit the profile to each source and write the calibrated profile to `out` if given; `options` are
    costmodel.calibrate's (models, sweep_model, dtype, allow_other_device)."""
    return costmodel.calibrate(source_refs, _profile(profile_ref), out=out, **options)


def evaluate_serving(
    profile_ref: Ref | HardwareProfile, source_ref: Ref, *, models: dict[str, str] | None = None
) -> list[tuple]:
    """Each measured serving point of a CSV with the profile's predicted (TPOT, TTFT)."""
    return costmodel.evaluate_serving(_profile(profile_ref), source_ref, models=models)
