"""Measurements for the search (`tpplan search --calibration`): calibrated profiles replace the profile
of their name; measurement files are fitted into their profile (fit_sources.calibrate); and serving
points measured at the searched model's exact configurations stand in for the cost model's TTFT and TPOT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import io
from ..errors import ConfigError
from ..records import Provenance, ServeEstimate
from ..specs import HardwareProfile, ModelSpec
from .fit_sources import calibrate
from .sources import SERVING, read_source
from .spread import measured_interval

SOURCES = (
    "a calibrated profile YAML, a sweep run dir or results.jsonl, a bench dir or bench.jsonl, nccl-tests "
    "output, or a serving CSV"
)


@dataclass
class Measured:
    """Serving points measured at exact configurations: (profile, engine, dtype, tp, pp, isl, osl, C) ->
    (ttft_ms, tpot_ms, where)."""

    points: dict[tuple, tuple[float, float, str]] = field(default_factory=dict)


def _model_key(name: str) -> str:
    """`meta-llama/Llama-3.1-70B-Instruct` and `Llama-3.1-70B` name the same model."""
    key = name.rstrip("/").split("/")[-1].lower()
    for suffix in ("-instruct", "-chat", "-base", "-hf"):
        key = key.removesuffix(suffix)
    return key


def _split_entry(entry: str, profiles: dict[str, HardwareProfile]) -> tuple[str | None, Path]:
    """`[PROFILE=]FILE`: which profile the measurements were taken on."""
    name, sep, rest = entry.partition("=")
    if sep and name in profiles:
        return name, Path(rest)
    if (
        sep and "/" not in name and not Path(entry).exists()
    ):  # a file name may hold "="; a profile name no "/"
        raise ConfigError(
            f"profile {name!r} is not one of the searched profiles",
            field="calibration",
            value=entry,
            expected=f"PROFILE=FILE with PROFILE one of {', '.join(profiles)}, or just FILE",
        )
    return None, Path(entry)


def apply_calibration(
    entries: list[str], profiles: dict[str, HardwareProfile], *, model: ModelSpec, model_ref: str
) -> tuple[dict[str, HardwareProfile], Measured, list[str]]:
    """Each `--calibration`: a calibrated profile replaces the profile of its name; a measurement (a
    sweep run dir or results.jsonl, nccl-tests output, serving CSV) is fitted into its profile by
    `fit_sources.calibrate`, and serving points of the searched model are kept to stand in for estimates."""
    measured, notes = Measured(), []
    for entry in entries:
        target, path = _split_entry(entry, profiles)
        if not path.exists():
            raise ConfigError(
                "no such file or directory",
                file=str(path),
                field="calibration",
                expected=SOURCES,
                request=True,
            )
        if path.is_dir():
            found = [path / n for n in ("results.jsonl", "bench.jsonl") if (path / n).is_file()]
            path = found[0] if found else path / "results.jsonl"
            if not path.is_file():
                raise ConfigError(
                    "has no results.jsonl or bench.jsonl",
                    file=str(path.parent),
                    field="calibration",
                    expected=SOURCES,
                    request=True,
                )
        if target is None:
            if path.suffix not in (".yaml", ".yml") and len(profiles) > 1:
                raise ConfigError(
                    f"{entry!r} does not say which profile it was measured on",
                    field="calibration",
                    expected=f"PROFILE=FILE with PROFILE one of {', '.join(profiles)}",
                )
            target = next(iter(profiles))
        if path.suffix in (".yaml", ".yml"):
            calibrated = io.load_profile(path)
            name = calibrated.name if calibrated.name in profiles else target
            profiles[name] = calibrated
            notes.append(f"{name}: calibrated profile {path}")
            continue
        src = read_source(path)
        ours = {
            p.model: model_ref
            for p in src.points
            if src.kind == SERVING and _model_key(p.model) == _model_key(model.name)
        }
        cal, profiles[target] = calibrate([path], profiles[target], models=ours)
        notes.append(f"{target}: fitted {', '.join(f for s in cal.sources for f in s.fitted)} to {path}")
        for p in src.points if src.kind == SERVING else []:
            if _model_key(p.model) == _model_key(model.name):
                key = (target, p.engine, p.dtype, p.tp, p.pp, p.isl, p.osl, p.concurrency)
                measured.points[key] = (p.ttft_ms, p.tpot_ms, f"{path} line {p.line}")
    return profiles, measured, notes


def with_measured(e: ServeEstimate, *, ttft_ms: float, tpot_ms: float, where: str) -> ServeEstimate:
    """The estimate with measured TTFT/TPOT; throughput from them by Little's law: each replica's
    C clients complete C / (TTFT + (O−1)·TPOT) requests per unit time."""
    per_instance_c = e.concurrency / e.layout.replicas
    rate_s = per_instance_c / (ttft_ms + (e.output_tokens - 1) * tpot_ms) * 1e3
    tokens_s = rate_s * e.output_tokens * e.layout.replicas
    tokens_usd = round(tokens_s * 3600 / e.usd_per_hour, 1) if e.usd_per_hour else 0.0
    return e.model_copy(
        update={
            "ttft_ms": round(ttft_ms, 3),
            "tpot_ms": round(tpot_ms, 4),
            **measured_interval(ttft_ms, tpot_ms, tokens_per_usd=tokens_usd),
            "output_tokens_per_s": round(tokens_s, 2),
            "requests_per_s": round(rate_s * e.layout.replicas, 4),
            "output_tokens_per_s_per_instance": round(tokens_s / e.layout.replicas, 2),
            "requests_per_s_per_instance": round(rate_s, 4),
            "output_tokens_per_usd": tokens_usd,
            "provenance": {
                **e.provenance,
                "measured": Provenance(
                    value=f"TTFT {ttft_ms:g} ms and TPOT {tpot_ms:g} ms at this layout and load; throughput "
                    "by Little's law, C / (TTFT + (O-1)·TPOT)",
                    basis="measured",
                    source=where,
                ),
                "uncertainty": Provenance(
                    value="none beyond the measurement's own run-to-run noise", basis="measured", source=where
                ),
            },
        }
    )
