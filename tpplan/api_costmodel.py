"""The façade's cost-model half (`tpplan estimate`, `tpplan calibrate`, and the serving estimate the
search scores with): load inputs once, place the layout with the candidates stage, price it with the
cost model. `tpplan.api` re-exports the public functions; this module keeps api.py short.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from . import bundled, costmodel, engines, io
from . import candidates as candidates_stage
from .api_base import Ref, check_context, check_engine, load_model, load_profile
from .errors import ConfigError, LayoutError
from .records import AllReduceEstimate, Calibration, Candidate, Layout, ServeEstimate
from .specs import HardwareProfile, ModelSpec, Workload


def _engine_config(
    engine: str, model: ModelSpec, profile: HardwareProfile, tp: int, pp: int
) -> costmodel.EngineConfig:
    if engine in costmodel.CALIBRATION_ENGINES:
        return costmodel.CALIBRATION_ENGINES[engine]
    d = engines.defaults(check_engine(engine), profile.gpu.name, profile.gpu.memory_gib.value, tp, pp, model)
    source = {
        "vllm": "vLLM 0.33.0 get_batch_defaults (vllm/engine/arg_utils.py)",
        "sglang": "SGLang 0.5.23 automatic chunked_prefill_size / cuda_graph_max_bs (memory_hook.py)",
        "megatron": "Megatron-LM inference defaults",
    }[engine]
    basis = "assumed" if engine == "megatron" else "published"  # Megatron-LM has no serving defaults
    return costmodel.EngineConfig(engine, d.max_num_batched_tokens, d.max_num_seqs, False, source, basis)


def _deployment(
    model: ModelSpec,
    profile: HardwareProfile,
    layout: Layout,
    engine: str,
    kv_dtype: str,
    seq_tokens: int,
    budget_gpus: int | None = None,
    candidate: Candidate | None = None,
) -> costmodel.Deployment:
    """Placement and memory of a layout, as the candidates stage judges them (budget: the layout's
    GPUs unless given: a larger budget can place instances that would not pack into fewer nodes).
    `candidate`: that judgement when the caller already has it (the engine rules run once per layout)."""
    memory_engine = check_engine(costmodel.MEMORY_PROXY.get(engine, engine))
    budget = budget_gpus or layout.gpus
    # The engine's "accepts tp in ..." names the degrees the hardware could run, not only up to this
    # layout's own GPU count (TP=3 is refused; 4 and 8 are the alternatives on an 8-GPU node).
    tp_limit = max(budget, profile.total_gpus)
    c = candidate or candidates_stage.judge(
        model, profile, layout, memory_engine, budget, seq_tokens, kv_dtype, tp_limit
    )
    stage_link = (
        "network"
        if c.crosses_node and c.tp_fabric != "network"
        else ("nvlink" if profile.domain_size > 1 else "pcie")
    )
    note = (
        f"{c.kv_cache_gib_per_gpu:g} GiB per GPU left of {c.memory_budget_gib_per_gpu:g} GiB "
        f"({memory_engine} memory fraction) after {c.weights_gib_per_gpu:g} GiB weights and "
        f"{c.activation_gib_per_gpu:g} GiB activations/runtime"
    )
    return costmodel.Deployment(
        tuple(c.layers_per_stage),
        c.tp_fabric,
        stage_link if layout.pp > 1 else "none",
        c.kv_cache_tokens,
        tuple(r for r in c.reasons if r.kind == "engine"),
        tuple(r for r in c.reasons if r.kind != "engine"),
        c.crosses_nvlink_domain,
        c.nodes,
        note,
    )


def estimate_allreduce(profile_ref: Ref, nbytes: int, ranks: int) -> AllReduceEstimate:
    """One all-reduce over `ranks` GPUs of the profile, placed from GPU 0 (more than a node: several nodes)."""
    profile = load_profile(profile_ref)
    layout = io.validate(Layout, {"tp": ranks}, "command line", prefix="--ranks as ")
    where = candidates_stage.place(profile, layout, _whole_nodes(profile, ranks))
    if where.problem:
        raise LayoutError(
            f"--ranks {ranks} on {profile.name}: {where.problem}; valid: {_valid_ranks(profile, ranks)}"
        )
    return costmodel.estimate_allreduce(profile, nbytes, ranks, where.tp_fabric)


def _whole_nodes(profile: HardwareProfile, ranks: int) -> int:
    """GPUs of the whole nodes `ranks` ranks need (or the profile's, if more): the group may use them."""
    gpn = profile.gpus_per_node
    return max(-(-ranks // gpn) * gpn, profile.total_gpus)


def _valid_ranks(profile: HardwareProfile, ranks: int) -> str:
    """What --ranks can be on this profile: up to a node, and (with an inter-node fabric) the counts
    that split evenly over the nodes they need; the nearest few around `ranks`."""
    gpn = profile.gpus_per_node
    if profile.inter_node is None:
        return f"1 to {gpn} (one node)"

    # Over k = ceil(n / gpn) nodes the engines start n / k ranks on each (placement.instance_gpus).
    def splits(n: int) -> bool:
        return n % -(-n // gpn) == 0

    above = [n for n in range(max(ranks, gpn) + 1, max(ranks, gpn) + 4 * gpn) if splits(n)][:3]
    below = [n for n in range(ranks - 1, gpn, -1) if splits(n)][:2][::-1]
    return (
        f"1 to {gpn} on one node, or across nodes a count that splits evenly over them: "
        f"{', '.join(map(str, below + above))}, ..."
    )


def estimate_serve(
    model_ref: Ref | ModelSpec, profile_ref: Ref, layout: Layout, workload: Workload, engine: str = "vllm"
) -> ServeEstimate:
    """Serving `workload` on `layout` (replicas share the concurrency evenly); refuses a request longer
    than the model's context."""
    model = model_ref if isinstance(model_ref, ModelSpec) else load_model(model_ref)
    check_context(model, workload.sequence_tokens, "--isl + --osl")
    return serve_estimate(model, load_profile(profile_ref), layout, workload, engine)


def serve_estimate(
    model: ModelSpec,
    profile: HardwareProfile,
    layout: Layout,
    workload: Workload,
    engine: str = "vllm",
    max_num_seqs: int | None = None,
    budget_gpus: int | None = None,
    max_model_len: int | None = None,
    candidate: Candidate | None = None,
) -> ServeEstimate:
    """`estimate_serve` on loaded records (the search prices thousands of layouts without re-reading
    files). `max_num_seqs` caps sequences per instance (default: the engine's); `budget_gpus` is the
    budget the instances are placed on (default: the layout's own GPUs); `max_model_len` is the context
    one sequence must fit in the KV cache (default: the workload's input + output tokens); `candidate`
    is the candidates stage's judgement of this layout when the caller has made it (with the same engine,
    budget, context and KV dtype), so the engine rules are not run again."""
    if workload.dtype == "fp8" and not profile.gpu.supports_fp8:
        raise ConfigError(
            f"{profile.gpu.name} has no FP8 tensor cores",
            field="--dtype",
            value="fp8",
            expected="bf16 or fp16 on this profile",
        )
    served = model.model_copy(update={"dtype": workload.dtype})
    dep = _deployment(
        served,
        profile,
        layout,
        engine,
        workload.kv_dtype_of(model),
        max_model_len or workload.sequence_tokens,
        budget_gpus,
        candidate,
    )
    cfg = _engine_config(engine, served, profile, layout.tp, layout.pp)
    if max_num_seqs is not None:
        cfg = dataclasses.replace(
            cfg, max_num_seqs=max_num_seqs, source=f"{cfg.source}; max_num_seqs as planned"
        )
    return costmodel.estimate_serve(model, profile, layout, workload, cfg, dep)


def calibrate(
    source_refs: list[Ref],
    profile_ref: Ref | HardwareProfile,
    out: Ref | None = None,
    models: dict[str, str] | None = None,
    sweep_model: Ref | None = None,
    dtype: str | None = None,
    allow_other_device: bool = False,
) -> tuple[Calibration, HardwareProfile]:
    """Fit the profile's efficiency parameters to each source (collectives first, then steps, then
    serving, which uses the collectives); write the calibrated profile to `out` if given. A source
    measured on another device kind (a CPU bench, a GPU profile) is refused unless allowed."""
    profile = profile_ref if isinstance(profile_ref, HardwareProfile) else load_profile(profile_ref)
    parsed = [(str(ref), costmodel.read_source(Path(ref))) for ref in source_refs]
    for _, src in parsed:
        costmodel.check_device(src, profile.name, profile.backend, allow_other_device)
    rank = {costmodel.NCCL_TESTS: 0, costmodel.SWEEP: 1, costmodel.SERVING: 2}
    fits = []
    for label, src in sorted(parsed, key=lambda p: rank[p[1].kind]):
        if src.kind == costmodel.NCCL_TESTS:
            fabric = _tp_fabric(profile, src.ranks, label)
            profile, fit = costmodel.calibrate_nccl(profile, src, fabric, label)
        elif src.kind == costmodel.SWEEP:
            model = _sweep_model(src, sweep_model, label)
            tps = {p.tp for p in src.points}
            fabric_of = {t: _tp_fabric(profile, t, label) for t in tps}
            profile, fit = costmodel.calibrate_sweep(profile, src, model, fabric_of, label, dtype)
        else:
            profile, fit = costmodel.calibrate_serving(
                profile, src, _serving_cases(profile, src, models or {}, label), label
            )
        fits.append(fit)
    cal = Calibration(
        profile=profile.name,
        out=str(out or ""),
        sources=fits,
        parameters=costmodel.fitted_parameters(profile),
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
    layout = io.validate(Layout, {"tp": tp}, label, prefix="tp as ")
    return candidates_stage.place(profile, layout, max(tp, profile.total_gpus)).tp_fabric


def _sweep_model(src, sweep_model: Ref | None, label: str) -> ModelSpec:
    if sweep_model is not None:
        return load_model(sweep_model)
    named = {p.model for p in src.points if isinstance(p.model, str)}
    specs = [p.model for p in src.points if isinstance(p.model, dict)]
    if specs:
        return io.validate(ModelSpec, specs[0], label, prefix="model.")
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
        return load_model(name)
    for file_name in bundled.bundled_names(bundled.MODELS):
        spec = load_model(file_name)
        if spec.name.lower() == name.lower():
            return spec
    return None


def _serving_cases(profile: HardwareProfile, src, models: dict[str, str], label: str) -> list:
    """Each serving point with its model spec, engine limits, placement and KV capacity."""
    cases, specs, deps = [], {}, {}
    for p in src.points:
        if p.model not in specs:
            specs[p.model] = load_model(
                models.get(p.model) or p.spec_path or _bundled_model_for(p.model, label)
            )
        model = specs[p.model].model_copy(update={"dtype": p.dtype})
        layout = io.validate(Layout, {"tp": p.tp, "pp": p.pp}, label, prefix=f"line {p.line}: ")
        key = (p.model, p.tp, p.pp, p.engine, p.dtype)
        if key not in deps:
            deps[key] = _deployment(model, profile, layout, p.engine, p.dtype, p.isl + p.osl)
        d = deps[key]
        cfg = _engine_config(p.engine, model, profile, p.tp, p.pp)
        if p.max_num_seqs:  # the server ran with this cap (a bench records it): queueing above it
            cfg = dataclasses.replace(cfg, max_num_seqs=p.max_num_seqs, source=f"{cfg.source}; as benched")
        cases.append(
            costmodel.serving_case(p, model, cfg, d.kv_tokens, d.layers_per_stage, d.tp_fabric, d.pp_fabric)
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
    profile_ref: Ref | HardwareProfile, source_ref: Ref, models: dict[str, str] | None = None
) -> list[tuple[costmodel.sources.ServingPoint, float, float]]:
    """Each measured serving point of a CSV with the profile's predicted (TPOT, TTFT)."""
    profile = profile_ref if isinstance(profile_ref, HardwareProfile) else load_profile(profile_ref)
    src = costmodel.read_source(Path(source_ref))
    if src.kind != costmodel.SERVING:
        raise ConfigError(
            f"is {src.kind} output, not serving points",
            file=str(source_ref),
            expected="a CSV of measured serving points",
        )
    params = costmodel.Params(profile)
    cases = _serving_cases(profile, src, models or {}, str(source_ref))
    return [(p, *c(params)) for p, c in zip(src.points, cases, strict=True)]
