"""Calibration from files (`tpplan calibrate`, `tpplan search --calibration`, the bench): read each
measurement source, place its layouts as the engines do (deploy.py), fit the profile's efficiency
parameters to it, and say how well a profile predicts measured serving points.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from .. import bundled, io
from .. import candidates as candidates_stage
from ..errors import ConfigError
from ..records import Calibration, Layout
from ..specs import HardwareProfile, ModelSpec
from .calibrate import calibrate_nccl, calibrate_serving, calibrate_sweep, fitted_parameters, serving_case
from .deploy import deployment, engine_config
from .params import Params
from .sources import NCCL_TESTS, SERVING, SWEEP, ServingPoint, check_device, read_source

Ref = str | os.PathLike


def calibrate(
    source_refs: list[Ref],
    profile: HardwareProfile,
    *,
    out: Ref | None = None,
    models: dict[str, str] | None = None,
    sweep_model: Ref | None = None,
    dtype: str | None = None,
    allow_other_device: bool = False,
) -> tuple[Calibration, HardwareProfile]:
    """Fit the profile's efficiency parameters to each source (collectives first, then steps, then
    serving, which uses the collectives); write the calibrated profile to `out` if given. A source
    measured on another device kind (a CPU bench, a GPU profile) is refused unless allowed."""
    parsed = [(str(ref), read_source(Path(ref))) for ref in source_refs]
    for _, src in parsed:
        check_device(src, profile.name, backend=profile.backend, allow_other=allow_other_device)
    rank = {NCCL_TESTS: 0, SWEEP: 1, SERVING: 2}
    fits = []
    for label, src in sorted(parsed, key=lambda p: rank[p[1].kind]):
        if src.kind == NCCL_TESTS:
            fabric = _tp_fabric(profile, src.ranks, label)
            profile, fit = calibrate_nccl(profile, src, fabric=fabric, label=label)
        elif src.kind == SWEEP:
            model = _sweep_model(src, sweep_model, label)
            tps = {p.tp for p in src.points}
            fabric_of = {t: _tp_fabric(profile, t, label) for t in tps}
            profile, fit = calibrate_sweep(
                profile, src, model=model, fabric_of=fabric_of, label=label, dtype=dtype
            )
        else:
            profile, fit = calibrate_serving(
                profile, src, cases=_serving_cases(profile, src, models or {}, label), label=label
            )
        fits.append(fit)
    cal = Calibration(
        profile=profile.name,
        out=str(out or ""),
        sources=fits,
        parameters=fitted_parameters(profile),
    )
    if out:
        header = (
            "# Calibrated by `tpplan calibrate "
            + " ".join(map(str, source_refs))
            + f" --profile {profile.name}`"
        )
        io.write_text(Path(out), io.to_yaml(profile, header))
    return cal, profile


def _tp_fabric(profile: HardwareProfile, tp: int, label: str) -> str:
    """The link a TP group of `tp` ranks placed from GPU 0 uses (several nodes when it must)."""
    layout = io.validate(Layout, {"tp": tp}, file=label, prefix="tp as ")
    return candidates_stage.place(profile, layout, budget_gpus=max(tp, profile.total_gpus)).tp_fabric


def _sweep_model(src, sweep_model: Ref | None, label: str) -> ModelSpec:
    if sweep_model is not None:
        return io.load_model(sweep_model)
    named = {p.model for p in src.points if isinstance(p.model, str)}
    specs = [p.model for p in src.points if isinstance(p.model, dict)]
    if specs:
        return io.validate(ModelSpec, specs[0], file=label, prefix="model.")
    if len(named) == 1:
        found = _bundled_model_named(named.pop())
        if found:
            return found
    raise ConfigError(
        "does not say which model was swept in a form tpplan can load",
        file=label,
        field="model",
        expected="--sweep-model SPEC (the model the sweep ran)",
    )


def _bundled_model_named(name: str) -> ModelSpec | None:
    """A bundled spec by file name (`tiny`) or by the name inside it (`tiny-llama`, as a sweep records it)."""
    if bundled.find_bundled(bundled.MODELS, name):
        return io.load_model(name)
    for file_name in bundled.bundled_names(bundled.MODELS):
        spec = io.load_model(file_name)
        if spec.name.lower() == name.lower():
            return spec
    return None


def _serving_cases(profile: HardwareProfile, src, models: dict[str, str], label: str) -> list:
    """Each serving point with its model spec, engine limits, placement and KV capacity."""
    cases, specs, deps = [], {}, {}
    for p in src.points:
        if p.model not in specs:
            specs[p.model] = io.load_model(
                models.get(p.model) or p.spec_path or _bundled_model_for(p.model, label)
            )
        model = specs[p.model].model_copy(update={"dtype": p.dtype})
        layout = io.validate(Layout, {"tp": p.tp, "pp": p.pp}, file=label, prefix=f"line {p.line}: ")
        key = (p.model, p.tp, p.pp, p.engine, p.dtype)
        if key not in deps:
            deps[key] = deployment(
                model, profile, layout=layout, engine=p.engine, kv_dtype=p.dtype, seq_tokens=p.isl + p.osl
            )
        d = deps[key]
        cfg = engine_config(p.engine, model, profile, p.tp, p.pp)
        if p.max_num_seqs:  # the server ran with this cap (a bench records it): queueing above it
            cfg = dataclasses.replace(cfg, max_num_seqs=p.max_num_seqs, source=f"{cfg.source}; as benched")
        cases.append(
            serving_case(
                p,
                model,
                engine=cfg,
                kv_tokens=d.kv_tokens,
                layers_per_stage=d.layers_per_stage,
                tp_fabric=d.tp_fabric,
                pp_fabric=d.pp_fabric,
            )
        )
    return cases


def _bundled_model_for(model_path: str, label: str) -> str:
    """`meta-llama/Llama-3.1-8B-Instruct` → bundled `llama-3.1-8b`, when one matches."""
    name = model_path.rstrip("/").split("/")[-1].lower()
    for suffix in ("-instruct", "-chat", "-base", "-hf"):
        name = name.removesuffix(suffix)
    if bundled.find_bundled(bundled.MODELS, name):
        return name
    raise ConfigError(
        f"no model spec for {model_path!r}",
        file=label,
        field="model_path",
        expected=f"--model {model_path}=SPEC, or one of the bundled: {', '.join(bundled.bundled_names(bundled.MODELS))}",
    )


def evaluate_serving(
    profile: HardwareProfile, source_ref: Ref, *, models: dict[str, str] | None = None
) -> list[tuple[ServingPoint, float, float]]:
    """Each measured serving point of a CSV with the profile's predicted (TPOT, TTFT)."""
    src = read_source(Path(source_ref))
    if src.kind != SERVING:
        raise ConfigError(
            f"is {src.kind} output, not serving points",
            file=str(source_ref),
            expected="a CSV of measured serving points",
        )
    params = Params(profile)
    cases = _serving_cases(profile, src, models or {}, str(source_ref))
    return [(p, *c(params)) for p, c in zip(src.points, cases, strict=True)]
