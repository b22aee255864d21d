"""Megatron-LM `torchrun` commands (one per node) that serve a plan, Megatron-LM @d98e8a6.

Entry point: `tools/run_text_generation_server.py`, Megatron's REST text-generation server. It
parses with `initialize_megatron(extra_args_provider=add_text_generate_args)`, i.e. the training
parser dumped in reference/engines/megatron_flags.tsv plus the tool's own group, from which only
`--port` is used. Run it from a Megatron-LM checkout. It serves one model copy per torchrun job
(rank 0 of the first stage answers HTTP and broadcasts to the others), so replicas are separate
jobs on disjoint GPUs and ports, never Megatron data parallelism.

The model shape is written out (and `--use-checkpoint-args` lets the checkpoint supply what a
ModelSpec does not record: rotary base; biases when the spec's linear_bias is null). Biases are
written when the spec records them: Megatron's default is a bias on every linear layer
(add_bias_linear = True), so a bias-free model needs `--disable-bias-linear` (plus `--add-qkv-bias`
for Qwen2's) — and an MoE model with a bias runs only at expert TP 1 ("Bias in MoE is only
supported when ETP==1", transformer_config.py __post_init__). `--load` is a Megatron checkpoint; its
torch_dist format reshards to any TP×PP at load.

Rules checked before writing (reference/engines/README.md §2, arguments.py @d98e8a6):
- world size: torchrun's ranks = TP × PP (DP = 1) (:428-450); layers % PP, heads % TP and the
  query-group rule come from engines.check (:985-998; transformer_config.py:1446-1468);
- `--kv-channels` whenever hidden ≠ heads × head_dim (:1331-1333);
- `--sequence-parallel` only with TP > 1 (:1428-1439); `--tp-comm-overlap` only with it (:1441-1442),
  and only when the TP group stays inside one NVLink domain: Transformer Engine's userbuffers
  overlap exchanges through NVLink peer memory and do not span nodes (NVIDIA/TransformerEngine#1071);
- TP > 1 below compute capability 10 needs CUDA_DEVICE_MAX_CONNECTIONS=1 (:1453-1479);
- MoE: num_experts % EP == 0 (:1656-1658); expert TP defaults to TP (validate_args), and the ranks
  must divide by ETP × EP × PP (parallel_state.initialize_model_parallel), so EP > 1 writes
  `--expert-tensor-parallel-size tp/ep`; a bias with ETP > 1 is refused (above).
"""

from __future__ import annotations

from ..errors import ConfigError, LayoutError
from ..records import EnvRef, Launch, Option, Process, Word
from .common import Slice, Target, check_plan, opt, place_instances, render_shell, title, visible
from .gpu_arch import BLACKWELL, FP8_MIN

ENTRY_POINT = "tools/run_text_generation_server.py"
ENTRY_POINT_FLAGS = frozenset({"--port"})  # add_text_generate_args; not in the training parser
TORCHRUN_FLAGS = frozenset(
    {"--standalone", "--nproc-per-node", "--nnodes", "--node-rank", "--master-addr", "--master-port"}
)
PARSER_FLAGS = frozenset({
    "--tensor-model-parallel-size", "--pipeline-model-parallel-size", "--sequence-parallel", "--tp-comm-overlap",
    "--num-layers", "--hidden-size", "--num-attention-heads", "--group-query-attention", "--num-query-groups",
    "--ffn-hidden-size", "--kv-channels", "--max-position-embeddings", "--seq-length", "--swiglu",
    "--normalization", "--untie-embeddings-and-output-weights",
    "--num-experts", "--moe-router-topk", "--moe-ffn-hidden-size", "--moe-shared-expert-intermediate-size",
    "--moe-layer-freq", "--expert-model-parallel-size", "--expert-tensor-parallel-size",
    "--disable-bias-linear", "--add-qkv-bias",
    "--multi-latent-attention", "--q-lora-rank", "--kv-lora-rank", "--qk-head-dim", "--qk-pos-emb-head-dim",
    "--v-head-dim",
    "--bf16", "--fp16", "--fp8-format", "--micro-batch-size", "--inference-max-requests",
    "--inference-max-seq-length", "--tokenizer-type", "--tokenizer-model", "--load", "--use-checkpoint-args",
})  # fmt: skip
FLAGS = PARSER_FLAGS | ENTRY_POINT_FLAGS  # every flag this module may write

DEFAULT_PORT = 5000  # add_text_generate_args: --port default
MASTER_PORT = 29500  # torchrun's default --master-port
# Architectures whose blocks use LayerNorm rather than RMSNorm (their Hugging Face modeling files).
LAYERNORM_ARCHS = frozenset({
    "FalconForCausalLM", "GPTNeoXForCausalLM", "OPTForCausalLM", "PhiForCausalLM", "Starcoder2ForCausalLM",
    "GPT2LMHeadModel", "GPTBigCodeForCausalLM", "BloomForCausalLM", "StableLmForCausalLM",
})  # fmt: skip


def model_options(t: Target) -> list[Option]:
    m = t.plan.model
    o = [
        opt("--num-layers", m.num_layers),
        opt("--hidden-size", m.hidden_size),
        opt("--num-attention-heads", m.num_attention_heads),
        opt("--ffn-hidden-size", m.intermediate_size),
        opt("--max-position-embeddings", m.max_position_embeddings),
        opt("--seq-length", t.plan.max_model_len),
        opt("--normalization", "LayerNorm" if m.architecture in LAYERNORM_ARCHS else "RMSNorm"),
    ]
    if m.mla:
        o += [
            opt("--multi-latent-attention"),
            opt("--kv-lora-rank", m.mla.kv_lora_rank),
            opt("--qk-head-dim", m.mla.qk_nope_head_dim),
            opt("--qk-pos-emb-head-dim", m.mla.qk_rope_head_dim),
            opt("--v-head-dim", m.mla.v_head_dim),
        ]
        if m.mla.q_lora_rank:
            o.append(opt("--q-lora-rank", m.mla.q_lora_rank))
    else:
        if m.num_kv_heads < m.num_attention_heads:
            o += [
                opt("--group-query-attention"),
                opt("--num-query-groups", m.num_kv_heads),
            ]
        if m.num_attention_heads * m.head_dim != m.hidden_size:
            o.append(opt("--kv-channels", m.head_dim))
    if m.linear_bias in ("none", "qkv"):
        o.append(opt("--disable-bias-linear"))
        if m.linear_bias == "qkv":
            o.append(opt("--add-qkv-bias"))
    if m.gated_mlp:
        o.append(opt("--swiglu"))
    if not m.tie_word_embeddings:
        o.append(opt("--untie-embeddings-and-output-weights"))
    if m.moe:
        o += [
            opt("--num-experts", m.moe.num_experts),
            opt("--moe-router-topk", m.moe.experts_per_token),
            opt("--moe-ffn-hidden-size", m.moe.expert_intermediate_size),
        ]
        if m.moe.shared_expert_intermediate_size:
            o.append(opt("--moe-shared-expert-intermediate-size", m.moe.shared_expert_intermediate_size))
        if m.num_moe_layers < m.num_layers:
            # Megatron reads a string as a Python list: 1 marks an MoE layer (arguments.py moe_freq_type).
            pattern = ",".join("1" if m.is_moe_layer(i) else "0" for i in range(m.num_layers))
            o.append(opt("--moe-layer-freq", f"[{pattern}]"))
    return o


def _tp_in_one_domain(t: Target, s: Slice) -> bool:
    """Every TP group of the instance whose first slice is `s` sits inside one NVLink domain."""
    prof, tp = t.plan.profile, t.plan.layout.tp
    if prof.nvlink is None:
        return False
    first = s.node * prof.gpus_per_node + s.gpus[0]
    per_node = len(s.gpus)  # ranks per node; rank r sits on node r // per_node
    for j in range(t.plan.layout.pp):
        gpus = [
            first + (r // per_node) * prof.gpus_per_node + r % per_node for r in range(j * tp, (j + 1) * tp)
        ]
        if len({prof.domain_of(g) for g in gpus}) > 1:
            return False
    return True


def parallel_options(t: Target, first: Slice) -> tuple[list[Option], list[str]]:
    lay, notes = t.plan.layout, []
    o = [
        opt("--tensor-model-parallel-size", lay.tp),
        opt("--pipeline-model-parallel-size", lay.pp),
    ]
    if lay.ep > 1:
        o += [
            opt("--expert-model-parallel-size", lay.ep),
            opt("--expert-tensor-parallel-size", lay.tp // lay.ep),
        ]
    if lay.tp > 1:
        o.append(opt("--sequence-parallel"))
        if _tp_in_one_domain(t, first):
            o.append(opt("--tp-comm-overlap"))
        else:
            notes.append(
                f"no --tp-comm-overlap: TP={lay.tp} leaves the NVLink domain, and Transformer Engine's "
                "userbuffer overlap works only inside one (TransformerEngine#1071)"
            )
    return o, notes


def serving_options(t: Target) -> tuple[list[Option], list[str]]:
    plan, cc, notes = t.plan, t.compute_capability, []
    if t.kv_dtype:
        raise LayoutError(
            f"Megatron-LM has no KV-cache dtype flag (its cache is in the params dtype, {t.activation_dtype}); "
            f"the plan's {t.kv_dtype} cache cannot be emitted; plan kv_cache_dtype as {t.activation_dtype}"
        )
    o = [opt("--fp16" if plan.dtype == "fp16" else "--bf16")]
    if plan.dtype == "fp8":
        if cc is not None and cc < FP8_MIN:
            raise LayoutError(
                f"fp8 needs compute capability >= {FP8_MIN} (Transformer Engine FP8); "
                f"{plan.profile.gpu.name} is {cc}"
            )
        o.append(opt("--fp8-format", "e4m3"))  # e4m3 everywhere: inference has no gradients
    checkpoint: Word = t.checkpoint or EnvRef(
        env="CHECKPOINT_DIR", meaning="the Megatron checkpoint directory (--load)"
    )
    o += [
        opt("--micro-batch-size", 1),
        opt("--inference-max-requests", plan.max_num_seqs),
        opt("--inference-max-seq-length", plan.max_model_len),
        opt("--tokenizer-type", "HuggingFaceTokenizer"),
        opt("--tokenizer-model", t.model_path),
        opt("--load", checkpoint),
        opt("--use-checkpoint-args"),
    ]
    if plan.memory_fraction is not None:
        notes.append(
            f"Megatron-LM has no memory-fraction flag; the plan's {plan.memory_fraction:g} is not applied"
        )
    return o, notes


def build(t: Target) -> Launch:
    check_plan(t)
    lay, cc = t.plan.layout, t.compute_capability
    if t.replica_mode == "dp":
        raise LayoutError(
            "--replicas dp: Megatron-LM's text-generation server serves one model copy per torchrun "
            "job; use --replicas instances"
        )
    placed = place_instances(t.plan.profile.gpus_per_node, lay.tp, pp=lay.pp, replicas=lay.replicas)
    port = t.base_port or DEFAULT_PORT
    env_extra: dict[str, Word] = {}
    notes = [f"run from a Megatron-LM checkout (flags of Megatron-LM @d98e8a6); entry point {ENTRY_POINT}"]
    if lay.tp > 1 and (cc is None or cc < BLACKWELL):
        env_extra["CUDA_DEVICE_MAX_CONNECTIONS"] = "1"
        if cc is None:
            notes.append(
                f"compute capability of {t.plan.profile.gpu.name} unknown: CUDA_DEVICE_MAX_CONNECTIONS=1 "
                "set as Megatron requires below Blackwell"
            )
    shape = model_options(t)
    serving, more = serving_options(t)
    notes += more
    procs = []
    for k, slices in enumerate(placed):
        parallel, more = parallel_options(t, slices[0])
        if k == 0:
            notes += more
        for i, s in enumerate(slices):
            launcher: list[Word] = ["torchrun", "--nproc-per-node", str(len(s.gpus))]
            if len(slices) == 1:
                launcher.insert(1, "--standalone")  # single-node rendezvous on a free local port
            else:
                launcher += [
                    "--nnodes",
                    str(len(slices)),
                    "--node-rank",
                    str(i),
                    "--master-addr",
                    t.node_addr(slices[0].node),
                    "--master-port",
                    str(MASTER_PORT),
                ]
            opts = [*parallel, *shape, *serving, opt("--port", port + k)]
            verify(t, opts, env=env_extra, ranks=len(s.gpus) * len(slices))
            role = "server" if len(slices) == 1 else ("head" if i == 0 else "worker")
            procs.append(
                Process(
                    node=s.node,
                    replicas=[k],
                    role=role,
                    port=port + k if i == 0 else None,
                    gpus=list(s.gpus),
                    env={**visible(s.gpus), **env_extra},
                    command=[*launcher, ENTRY_POINT],
                    options=opts,
                )
            )
    nodes = 1 + max(p.node for p in procs)
    return Launch(engine="megatron", title=title(t, nodes), nodes=nodes, processes=procs, notes=notes)


def verify(t: Target, opts: list[Option], *, env: dict[str, Word], ranks: int) -> None:
    """Megatron's own argument rules, applied to what is about to be written (README §2)."""
    flags = {o.flag: o.value for o in opts}
    m, lay = t.plan.model, t.plan.layout
    problems = []
    if ranks % (lay.tp * lay.pp) or ranks != lay.world_size:
        problems.append(f"torchrun starts {ranks} ranks, not TP×PP = {lay.world_size} [arguments.py:428-450]")
    if "--tp-comm-overlap" in flags and "--sequence-parallel" not in flags:
        problems.append("--tp-comm-overlap requires --sequence-parallel [arguments.py:1441-1442]")
    if "--sequence-parallel" in flags and lay.tp == 1:
        problems.append("--sequence-parallel needs TP > 1 [model_parallel_config.py:502-504]")
    if "--kv-channels" not in flags and not m.mla and m.hidden_size % m.num_attention_heads:
        problems.append(
            f"hidden ({m.hidden_size}) % heads ({m.num_attention_heads}) != 0 needs --kv-channels "
            "[arguments.py:1331-1333]"
        )
    problems += _moe_problems(t, flags, ranks)
    cc = t.compute_capability
    if lay.tp > 1 and (cc is None or cc < BLACKWELL) and env.get("CUDA_DEVICE_MAX_CONNECTIONS") != "1":
        problems.append("TP > 1 below Blackwell needs CUDA_DEVICE_MAX_CONNECTIONS=1 [arguments.py:1453-1479]")
    if problems:
        raise LayoutError("Megatron-LM would reject these arguments: " + "; ".join(problems))


def _moe_problems(t: Target, flags: dict, ranks: int) -> list[str]:
    m = t.plan.model
    if m.moe is None:
        return []
    tp, pp = t.plan.layout.tp, t.plan.layout.pp
    ep = int(flags.get("--expert-model-parallel-size", 1))
    etp = int(flags.get("--expert-tensor-parallel-size", tp))  # validate_args: ETP defaults to TP
    problems = []
    if m.moe.num_experts % ep:
        problems.append(f"num_experts ({m.moe.num_experts}) % EP ({ep}) != 0 [arguments.py:1656-1658]")
    if ranks % (etp * ep * pp):
        problems.append(
            f"{ranks} ranks are not divisible by ETP×EP×PP = {etp * ep * pp} [parallel_state.initialize_model_parallel]"
        )
    if "--disable-bias-linear" not in flags and etp != 1:
        known = (
            "has linear biases"
            if m.linear_bias == "all"
            else "records no linear_bias, so the default bias stays on"
        )
        problems.append(
            f"{m.name} {known}, and Megatron allows a bias in MoE only with ETP == 1 (ETP = {etp}) "
            "[transformer_config.py __post_init__]"
        )
    return problems


def render(launch: Launch, fmt: str, *, config_path: str) -> str:
    if fmt != "cli":
        raise ConfigError(
            "Megatron-LM has no flag-per-key config file (its --yaml-cfg is a different schema)",
            field="--format",
            value=fmt,
            expected="cli for megatron",
        )
    return render_shell(launch)
