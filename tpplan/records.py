"""Records passed between pipeline stages (frozen pydantic models; derived values are properties)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, computed_field, model_validator

from .specs import HardwareProfile, ModelSpec, Workload
from .specs.base import Frozen

Degree = Annotated[int, Field(ge=1, le=100_000)]
TpFabric = Literal["none", "nvlink", "pcie", "network"]


class Layout(Frozen):
    """A parallel layout: `replicas` independent engine instances of tp × pp GPUs each."""

    tp: Degree = Field(description="tensor-parallel degree (GPUs sharing each layer)")
    pp: Degree = Field(1, description="pipeline-parallel degree (stages of consecutive layers)")
    replicas: Degree = Field(1, description="independent instances (data parallelism)")

    @model_validator(mode="before")
    @classmethod
    def _derived_fields_back(cls, data: Any) -> Any:
        """A dumped Layout carries its computed `world_size` and `gpus`; accept them back when they
        agree with tp, pp and replicas, so a plan or candidate file round-trips."""
        if not isinstance(data, dict) or not {"world_size", "gpus"} & data.keys():
            return data
        data = dict(data)
        tp, pp, replicas = data.get("tp"), data.get("pp", 1), data.get("replicas", 1)
        derived = {"world_size": ("tp × pp", (tp, pp)), "gpus": ("tp × pp × replicas", (tp, pp, replicas))}
        for key, (formula, factors) in derived.items():
            given = data.pop(key, None)
            if given is None or not all(type(f) is int for f in factors):
                continue  # a bad tp/pp/replicas is reported by their own validation
            expected = 1
            for f in factors:
                expected *= f
            if given != expected:
                raise ValueError(f"{key} ({given!r}) disagrees with {formula} ({expected}); drop it or fix it")
        return data

    @computed_field  # in JSON output, so scripts need not multiply
    @property
    def world_size(self) -> int:
        return self.tp * self.pp

    @computed_field
    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.replicas

    def label(self) -> str:
        return f"TP{self.tp}×PP{self.pp}×R{self.replicas}"


class Candidate(Layout):
    """One layout judged against an engine's rules, the memory and the topology."""

    engine: Literal["vllm", "megatron", "sglang"]
    engine_ok: bool = Field(description="the engine's own rules accept this layout")
    fits: bool = Field(description="weights + activations + a max_model_len KV cache fit the memory budget")
    valid: bool = Field(description="engine_ok and fits and placeable on the budget")
    reasons: list[str] = Field(description="why not valid (empty when valid)")
    notes: list[str] = Field(default_factory=list, description="warnings that do not make it invalid")
    heads_per_rank: list[int] = Field(description="query heads per TP rank as the engine places them")
    kv_heads_per_rank: list[int] = Field(description="KV heads stored per TP rank (replicated when kv < tp)")
    layers_per_stage: list[int] = Field(description="decoder layers per pipeline stage")
    weights_gib_per_gpu: float = Field(description="weights on the busiest GPU")
    activation_gib_per_gpu: float = Field(description="peak activations + runtime overhead reserved per GPU")
    memory_budget_gib_per_gpu: float = Field(description="device memory × the engine's memory fraction")
    kv_cache_gib_per_gpu: float = Field(description="memory left for the KV cache on the tightest GPU")
    kv_cache_tokens: int = Field(description="tokens of KV cache one instance holds")
    max_model_len: int = Field(description="context length the fit was checked for")
    crosses_nvlink_domain: bool = Field(description="some TP group spans more than one NVLink domain")
    crosses_node: bool = Field(description="some TP or PP group spans nodes")
    tp_fabric: TpFabric = Field(description="slowest link inside a TP group")
    nodes: int = Field(description="nodes the layout occupies")
    idle_gpus: int = Field(description="GPUs of the budget this layout leaves unused")


class Plan(Frozen):
    """What to launch, as `tpplan search` decides it and `tpplan emit` turns it into commands.

    Carries the model and profile themselves (not paths), so a plan file is self-contained.
    """

    model: ModelSpec
    model_path: str = Field("", description="what the engine loads (HF repo id or local dir); empty: model.name")
    profile: HardwareProfile
    engine: Literal["vllm", "megatron", "sglang"]
    layout: Layout
    max_num_seqs: Annotated[int, Field(ge=1, le=1_000_000)] = Field(description="concurrent sequences per replica")
    max_model_len: Annotated[int, Field(ge=1, le=100_000_000)] = Field(description="context length per sequence")
    dtype: Literal["bf16", "fp16", "fp8"] = Field("bf16", description="weight / compute dtype")
    kv_cache_dtype: Literal["auto", "bf16", "fp16", "fp8"] = Field("auto", description="KV-cache dtype")
    memory_fraction: Annotated[float, Field(gt=0, le=1)] | None = Field(
        None, description="engine memory fraction; None means the engine's default"
    )
    workload: Workload | None = Field(None, description="the load the plan was chosen for")
    estimate: ScoredConfig | None = Field(
        None, description="what `tpplan search` expects of this plan, and whether it is measured, fitted or from a profile"
    )
    provenance: dict[str, str] = Field(
        default_factory=dict, description="each number behind the estimate: value (basis: source)"
    )
    why: list[str] = Field(default_factory=list, description="what the winner's neighbours lost on")


# ---- emit: the commands that launch a plan ---------------------------------------------------
EnvName = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")]


class EnvRef(Frozen):
    """A site value the plan cannot know (a node's address, a checkpoint directory). The launch
    text reads it from this environment variable, so the commands run as written once it is set."""

    env: EnvName
    meaning: str = Field(description="what to set the variable to")
    suffix: str = Field("", description="literal text after the value, e.g. ':20000'")


Word = str | EnvRef


class Option(Frozen):
    """One engine flag and its value; a switch has no value."""

    flag: Annotated[str, Field(pattern=r"^--[a-z0-9][a-z0-9-]*$")]
    value: int | float | str | EnvRef | None = None


class Process(Frozen):
    """One command to start on one node of the deployment (nodes numbered from 0)."""

    node: Annotated[int, Field(ge=0)]
    replicas: list[int] = Field(
        description="replica indices this process serves (several with data parallelism)"
    )
    role: Literal["server", "head", "worker"] = Field(
        description="server: a whole instance; head: node 0 of a multi-node instance (serves HTTP); worker: joins a head"
    )
    port: int | None = Field(description="HTTP port it serves on; None for workers")
    gpus: list[int] = Field(description="local CUDA device indices (CUDA_VISIBLE_DEVICES)")
    env: dict[str, Word] = Field(description="environment assignments placed before the command")
    command: list[Word] = Field(
        description="program words before the engine's options (launcher flags included)"
    )
    options: list[Option]


class Launch(Frozen):
    """Everything needed to start a plan on one engine."""

    engine: Literal["vllm", "megatron", "sglang"]
    title: str = Field(description="one line: model, hardware, engine, layout")
    nodes: Annotated[int, Field(ge=1)]
    processes: list[Process]
    notes: list[str] = Field(description="what the commands assume and why a flag is (or is not) there")

    @property
    def site_values(self) -> list[EnvRef]:
        """Environment variables the commands read, each once, in order of first use."""
        found: dict[str, EnvRef] = {}
        for p in self.processes:
            words = [*p.env.values(), *p.command, *(o.value for o in p.options)]
            for w in words:
                if isinstance(w, EnvRef):
                    found.setdefault(w.env, w)
        return list(found.values())


# ---- topology (tpplan detect) ---------------------------------------------------------------
class Detection(Frozen):
    """What `tpplan detect` found: the profile it writes, and whether a GPU answered at all."""

    profile: HardwareProfile
    gpu_found: bool = Field(description="NVML reported at least one GPU; False: a CPU (gloo) profile")
    fallback_reason: str | None = Field(None, description="why no GPU was read (nvmlInit error, no GPU)")
    warnings: list[str] = Field(default_factory=list, description="degraded links, unsourced numbers")
# ---- cost model: `tpplan estimate` and `tpplan calibrate` ---------------------------------------
class AllReduceEstimate(Frozen):
    """One all-reduce as the cost model prices it, in nccl-tests' terms."""

    bytes: int = Field(description="message size S")
    ranks: int = Field(description="ranks n in the all-reduce")
    fabric: TpFabric = Field(
        description="slowest link in the group: nvlink | pcie | network (none for 1 rank)"
    )
    implementation: str = Field(description="backend (NCCL/gloo) or custom (an engine's own kernel)")
    latency_us: float = Field(description="t = alpha + S·2(n−1)/n ÷ busbw(S)")
    algbw_gbps: float = Field(description="S / t")
    busbw_gbps: float = Field(description="algbw · 2(n−1)/n")
    provenance: list[str] = Field(description="where each number came from: fitted curve, prior, profile")


class StepBreakdown(Frozen):
    """Where the milliseconds of a mean serving step go (one output token for every running sequence)."""

    compute_ms: float = Field(description="ops bound by FLOPs (prefill chunks, large batches)")
    weight_reads_ms: float = Field(description="ops bound by reading the weights")
    kv_reads_ms: float = Field(description="attention bound by reading the KV cache")
    allreduce_ms: float = Field(description="TP all-reduces")
    p2p_ms: float = Field(description="pipeline-stage sends")
    overhead_ms: float = Field(description="per-step, per-layer and per-sequence software costs")
    bubble_ms: float = Field(description="pipeline stages waiting on the slowest")
    allreduce_count: int = Field(description="all-reduces per step on the busiest stage path")
    allreduce_bytes: float = Field(description="bytes of each all-reduce")
    allreduce_us_each: float = Field(description="time of each all-reduce")
    allreduce_implementation: str = Field(description="backend | custom | none")

    @computed_field
    @property
    def total_ms(self) -> float:
        return (
            self.compute_ms
            + self.weight_reads_ms
            + self.kv_reads_ms
            + self.allreduce_ms
            + self.p2p_ms
            + self.overhead_ms
            + self.bubble_ms
        )


class ServeEstimate(Frozen):
    """Serving at a closed-loop concurrency, as `vllm bench serve --max-concurrency C` reports it."""

    model: str
    profile: str
    engine: str
    layout: Layout
    input_tokens: int
    output_tokens: int
    concurrency: int = Field(description="requests in flight across all replicas")
    dtype: str
    kv_cache_dtype: str
    ttft_ms: float = Field(description="mean time to first token")
    tpot_ms: float = Field(description="mean time per output token after the first")
    output_tokens_per_s: float = Field(description="all replicas")
    requests_per_s: float = Field(description="all replicas")
    output_tokens_per_s_per_instance: float
    requests_per_s_per_instance: float
    gpus: int
    usd_per_hour: float
    output_tokens_per_usd: float
    fits: bool = Field(
        description="weights, activations and one I+O sequence fit; engine and placement accept it"
    )
    reasons: list[str] = Field(description="why it does not fit (empty when it fits)")
    kv_cache_tokens: int = Field(description="KV-cache capacity of one instance, tokens")
    max_concurrency: int = Field(
        description="requests of I+O tokens the KV caches of all replicas hold at once"
    )
    max_num_seqs: int = Field(description="the engine's sequence cap per instance")
    resident_per_instance: float = Field(description="requests inside one engine (the rest wait)")
    decode_batch: float = Field(description="mean sequences decoding per step")
    prefill_tokens_per_step: float = Field(description="mean prompt tokens per step (others' prefills)")
    queue_wait_ms: float = Field(description="mean wait for a sequence slot or KV space")
    tp_fabric: TpFabric
    crosses_nvlink_domain: bool
    nodes: int
    breakdown: StepBreakdown = Field(description="the mean step, whose total is the TPOT")
    provenance: dict[str, str] = Field(description="each input number: value (basis: source)")
    converged: bool = Field(description="the steady-state equations converged")


class ErrorStats(Frozen):
    metric: str = Field(description="what was compared: tpot, ttft, step, allreduce")
    points: int
    median_abs_pct: float = Field(description="median |predicted − measured| / measured, %")
    p90_abs_pct: float = Field(description="90th percentile of the same, %")


class SourceFit(Frozen):
    """What one calibration source contributed, and how well the fitted model then reproduces it."""

    source: str = Field(description="the file as given")
    kind: Literal["sweep", "nccl-tests", "serving"]
    points: int = Field(description="measurements used")
    skipped: list[str] = Field(description="measurements not used, and why")
    fitted: list[str] = Field(description="parameters fitted from it")
    errors: list[ErrorStats] = Field(description="fit error of the calibrated model on this source")


class Calibration(Frozen):
    """`tpplan calibrate`: the profile written and the fit per source."""

    profile: str = Field(description="name of the calibrated profile")
    out: str = Field(description="where the calibrated profile was written ('' when not written)")
    sources: list[SourceFit]
    parameters: dict[str, str] = Field(description="every fitted parameter: value (basis: source)")
# ---- sweep: one measured layout (`tpplan sweep`; a line of DIR/results.jsonl) ------------------
# Written by tpplan/sweep; read by the cost model's calibration and by reports. Times are wall
# clock measured on this machine (perf_counter on CPU, CUDA events on GPU) unless a field says so.

SweepStatus = Literal["ok", "timeout", "failed", "oom", "skipped"]
HeadsMode = Literal["even", "uneven", "padded"]
SweepDtype = Literal["fp32", "bf16", "fp16"]


class Stats(Frozen):
    """Summary of timed samples, as nccl-tests reports them (cv = standard deviation / mean)."""

    p50: float
    p99: float
    min: float
    max: float
    cv: float = Field(description="coefficient of variation: stdev / mean")
    n: int = Field(description="samples summarised")


class Latency(Frozen):
    p50: float
    p99: float


class AllReduceStats(Frozen):
    """The TP all-reduces of one step (after attention-out and MLP-down; one per layer for parallel blocks)."""

    bytes: int = Field(description="message size of one all-reduce (micro-batch tokens × hidden × dtype bytes)")
    group_size: int = Field(description="ranks in each all-reduce (the TP degree)")
    count_per_step: int = Field(description="all-reduces one TP rank issues per step (all its layers and micro-batches)")
    latency_us: Latency = Field(
        description="per call, the shortest time any rank of the group spent in it (the transfer, without waiting for stragglers)"
    )
    algbw_gbps: float = Field(description="bytes / latency p50")
    busbw_gbps: float = Field(description="algbw × 2(n−1)/n (nccl-tests doc/PERFORMANCE.md)")
    share_of_step: float = Field(description="count_per_step × latency p50 / step p50")


class RankTiming(Frozen):
    """One rank's median step, split into compute and waiting."""

    rank: int
    replica: int
    stage: int
    tp_rank: int
    heads: int = Field(description="query heads on this rank (zero heads included when padded)")
    kv_heads: int = Field(description="KV heads this rank stores (replicated when kv_heads < tp)")
    compute_ms: float = Field(description="step time outside collectives and point-to-point waits")
    wait_ms: float = Field(description="time inside all-reduces and point-to-point send/recv")
    allreduce_ms: float
    p2p_ms: float = Field(description="pipeline send/recv waits (includes the pipeline bubble)")
    busy_frac: float = Field(description="compute_ms / this rank's step time")
    cpu_ms: float | None = Field(
        None, description="CPU time of the rank's main thread per step, its compute without waits for a core (CPU only)"
    )
    gpu_util_pct: float | None = Field(None, description="mean NVML utilization while timed (GPU only)")


class Drift(Frozen):
    """TP=N output against the TP=1 model with the same weights, input and dtype."""

    dtype: SweepDtype
    reference: str = Field(description="what the output was compared with")
    max_abs: float = Field(description="max |Δ| of the last-token logits")
    max_rel: float = Field(description="max |Δ| / max(|reference|, atol) of the last-token logits")
    hidden_max_abs: float = Field(description="max |Δ| of the final (normed) hidden states")
    allclose: bool = Field(description="torch.allclose(atol, rtol) holds for logits and hidden states")
    atol: float
    rtol: float
    advice: list[str] = Field(default_factory=list, description="remedies when allclose fails")


class Measurement(Layout):
    """One layout × dtype × heads form, measured (or why it could not be)."""

    key: str = Field(description="identity of this measurement; `--resume` skips keys already recorded")
    model: str
    dtype: SweepDtype
    tokens: int = Field(description="tokens per sequence in one forward pass (prefill)")
    batch: int = Field(description="sequences per forward pass")
    microbatches: int = Field(description="pipeline micro-batches per step (1 without PP)")
    heads_mode: HeadsMode
    status: SweepStatus
    reason: str = Field("", description="why status is not ok")
    backend: Literal["gloo", "nccl"]
    layers_measured: int = Field(description="real-width decoder layers that ran")
    layers_total: int = Field(description="decoder layers of the model; per-step figures are scaled by depth")
    step_ms: Stats | None = Field(None, description="measured step time of one instance (layers_measured layers)")
    step_ms_full_depth: float | None = Field(None, description="step p50 × layers_total / layers_measured")
    allreduce: AllReduceStats | None = None
    ranks: list[RankTiming] = Field(default_factory=list)
    heads_per_rank: list[int] = Field(default_factory=list, description="query heads per TP rank")
    kv_heads_per_rank: list[int] = Field(default_factory=list)
    padding_heads: int = Field(0, description="zero heads added so heads divide by tp (padded form)")
    padding_cost_pct: float | None = Field(
        None, description="padded form: busy time summed over ranks vs the uneven form measured in the same sweep, +%"
    )
    engines_accepting: list[str] = Field(default_factory=list, description="engines whose rules accept this layout and heads form")
    imbalance_pct: float | None = Field(
        None, description="max over TP groups of (slowest − fastest rank compute) / slowest × 100"
    )
    busy_spread_ms: float | None = Field(None, description="slowest − fastest rank compute time in a TP group")
    drift: Drift | None = None
    tokens_per_s: float | None = Field(None, description="all replicas together, scaled to full depth")
    tokens_per_s_alone: float | None = Field(None, description="one instance running alone (replicas > 1)")
    replica_scaling: float | None = Field(None, description="tokens_per_s / (replicas × tokens_per_s_alone)")
    ranks_per_core: float = Field(description="local ranks per CPU core (> 1 oversubscribes)")
    representative: bool = Field(description="false when ranks oversubscribe CPU cores: timings are then not representative")
    warmup: int
    iters: int
    notes: list[str] = Field(default_factory=list)
    measured_at: str = Field("", description="UTC time the measurement finished (ISO 8601)")

    @model_validator(mode="before")
    @classmethod
    def _drop_computed(cls, data: Any) -> Any:
        """A results.jsonl line carries world_size/gpus (computed fields); reading it back drops them."""
        if isinstance(data, dict) and ("world_size" in data or "gpus" in data):
            data = {k: v for k, v in data.items() if k not in ("world_size", "gpus")}
        return data


# ---- search: `tpplan search` ------------------------------------------------------------------
Basis = Literal["measured", "fitted", "profile"]


class ScoredConfig(Frozen):
    """One serving configuration as the search judged it (one Optuna trial's result)."""

    profile: str = Field(description="hardware profile (GPU type)")
    tp: int
    pp: int
    replicas: int
    gpus: int = Field(description="tp × pp × replicas")
    concurrency: int = Field(description="client requests in flight across all replicas")
    max_num_seqs: int = Field(description="sequences each replica runs at once")
    dtype: str = Field(description="weight dtype")
    kv_cache_dtype: str
    output_tokens_per_s: float = Field(description="all replicas")
    output_tokens_per_usd: float = Field(description="the objective")
    ttft_ms: float
    tpot_ms: float
    feasible: bool = Field(description="fits, the engine accepts it, and it meets the SLOs")
    violations: dict[str, float] = Field(
        description="constraint values as Optuna sees them (> 0: violated, by that fraction)"
    )
    reasons: list[str] = Field(description="why it is infeasible, in numbers (empty when feasible)")
    basis: Basis = Field(
        description="measured: TTFT/TPOT measured at this layout; fitted: cost model with fitted "
        "parameters; profile: cost model on the profile's published or assumed numbers"
    )
    trial: int | None = Field(None, description="the Optuna trial that evaluated it first")

    def label(self) -> str:
        kv = "" if self.kv_cache_dtype == self.dtype else f" (KV {self.kv_cache_dtype})"
        return f"TP={self.tp} PP={self.pp} x{self.replicas} seqs {self.max_num_seqs} {self.dtype}{kv}"


class Neighbour(Frozen):
    """A configuration one step from the winner, and what it lost on."""

    change: str = Field(description="TP*2, TP/2, replicas+1, replicas-1, PP+1")
    config: ScoredConfig | None = Field(description="None when it cannot exist within the budget")
    tokens_per_usd_ratio: float | None = Field(description="its output tokens/USD ÷ the winner's")
    lost_on: str = Field(description="one sentence, in numbers")


class SearchResult(Frozen):
    """`tpplan search`: the winner, the runners-up, the Pareto front, and how the search went."""

    model: str
    engine: str
    best: ScoredConfig
    top: list[ScoredConfig] = Field(description="the best feasible configurations, best first")
    pareto: list[ScoredConfig] = Field(
        description="feasible configurations no other beats on tokens/USD, TPOT and TTFT at once"
    )
    neighbours: list[Neighbour]
    trials: int = Field(description="finished trials in the study (repeats of a configuration included)")
    evaluations: int = Field(description="distinct configurations evaluated")
    repeats: int = Field(description="trials that drew an already evaluated configuration (answered from the cache)")
    feasible: int = Field(description="distinct feasible configurations found")
    space_size: int = Field(description="distinct configurations in the search space")
    study: str
    storage: str
    plan: str = Field(description="where the plan was written")
    notes: list[str] = Field(default_factory=list)
