"""`python -m sglang.launch_server` commands (and the equivalent `--config` YAML) for a plan,
SGLang 0.5.23.

Replicas: separate servers on disjoint GPUs and ports (default), or `--dp-size R` behind one
endpoint when all replicas share a node (SGLang's data-parallel controller starts R TP groups;
across nodes it needs DP attention, which is a different layout). SGLang reads
`--max-running-requests` as the total over DP workers and divides it by dp_size
(sglang cuda_graph_runner.get_batch_sizes_to_capture), so dp mode writes max_num_seqs × R.

An instance larger than a node: the same command on every node with `--nnodes N --node-rank i
--dist-init-addr <node 0>:20000`; node 0 serves HTTP (docs.sglang.io, references/multi_node_deployment).
A `--config` YAML holds long flag names; flags on the command line override it (SGLang's
ConfigArgumentMerger).
"""

from __future__ import annotations

from ..errors import LayoutError
from ..records import Launch, Option, Process
from .common import Target, check_plan, opt, place_instances, render_config, render_shell, title, visible

FLAGS = frozenset({
    "--model-path", "--tp-size", "--pp-size", "--dp-size", "--mem-fraction-static", "--max-running-requests",
    "--context-length", "--kv-cache-dtype", "--dtype", "--quantization", "--port",
    "--nnodes", "--node-rank", "--dist-init-addr", "--enable-dp-attention", "--ep-size",
})  # fmt: skip

DEFAULT_PORT = 30000  # sglang_flags_all.tsv: --port default
DIST_INIT_PORT = 20000  # the port SGLang's multi-node docs use in --dist-init-addr
COMMAND = ["python", "-m", "sglang.launch_server"]
DTYPE = {"bf16": "bfloat16", "fp16": "float16", "fp8": "bfloat16"}  # fp8 weights: --quantization fp8
# SGLang's own KV vocabulary (--kv-cache-dtype choices: auto|fp8_e5m2|fp8_e4m3|mxfp8|bf16|bfloat16|
# nvfp4|fp4_mx_block16). It has no fp16 choice; fp16 is reachable only as "auto" on an fp16 model,
# where no flag is written (tpplan writes one only when the cache differs from the activations).
KV_DTYPE = {"bf16": "bf16", "fp8": "fp8_e4m3"}


def shared_options(t: Target, dp: int) -> tuple[list[Option], list[str]]:
    plan = t.plan
    fraction, why = t.memory_fraction()
    opts = [
        opt("--model-path", t.model_path),
        opt("--tp-size", plan.layout.tp),
        opt("--pp-size", plan.layout.pp),
        opt("--mem-fraction-static", fraction),
        opt("--max-running-requests", plan.max_num_seqs * dp),
        opt("--context-length", plan.max_model_len),
        opt("--dtype", DTYPE[t.activation_dtype]),
    ]
    if plan.served_model_name:  # the name clients send; SGLang answers to the model path otherwise
        opts.append(opt("--served-model-name", plan.served_model_name))
    lay = plan.layout
    if lay.dp_attention > 1:
        # DP attention inside one engine of tp GPUs: tp % dp == 0 (parallel_hook.py:326); the plan's
        # max_num_seqs per instance is the --max-running-requests total SGLang divides over the DP workers
        opts[3:3] = [opt("--dp-size", lay.dp_attention), opt("--enable-dp-attention")]
    elif dp > 1:
        opts.insert(3, opt("--dp-size", dp))
    if lay.ep > 1:
        opts.insert(3, opt("--ep-size", lay.ep))  # ep · moe_dp <= tp (parallel_hook.py:172-176)
    if plan.dtype == "fp8":
        opts.append(opt("--quantization", "fp8"))
    if t.kv_dtype == "fp16":
        raise LayoutError(
            f"SGLang has no fp16 KV-cache dtype (choices: auto, fp8_e5m2, fp8_e4m3, bf16, ...), and with "
            f"{plan.dtype} weights its cache is {t.activation_dtype}; plan kv_cache_dtype as bf16 or fp8"
        )
    if t.kv_dtype:
        opts.append(opt("--kv-cache-dtype", KV_DTYPE[t.kv_dtype]))
    return opts, [f"--mem-fraction-static {fraction:g}: {why}"]


def build(t: Target) -> Launch:
    check_plan(t)
    lay = t.plan.layout
    port = t.base_port or DEFAULT_PORT
    placed = place_instances(t.plan.profile.gpus_per_node, lay.tp, pp=lay.pp, replicas=lay.replicas)
    procs: list[Process] = []
    if t.replica_mode == "dp" and lay.replicas > 1:
        if len({s.node for slices in placed for s in slices}) > 1:
            raise LayoutError(
                f"--replicas dp: {lay.replicas} replicas of {lay.world_size} GPUs do not share one node, and SGLang's "
                "data parallelism across nodes needs DP attention (another layout); use --replicas instances"
            )
        opts, notes = shared_options(t, lay.replicas)
        gpus = [g for (s,) in placed for g in s.gpus]
        procs.append(
            Process(
                node=0,
                replicas=list(range(lay.replicas)),
                role="server",
                port=port,
                gpus=gpus,
                env=visible(gpus),
                command=list(COMMAND),
                options=[*opts, opt("--port", port)],
            )
        )
        notes.append(
            f"--max-running-requests is the total over {lay.replicas} DP workers "
            f"({t.plan.max_num_seqs} per replica); SGLang divides it by --dp-size"
        )
        return Launch(engine="sglang", title=title(t, 1), nodes=1, processes=procs, notes=notes)
    opts, notes = shared_options(t, 1)
    for k, slices in enumerate(placed):
        for i, s in enumerate(slices):
            multi = []
            if len(slices) > 1:
                multi = [
                    opt("--nnodes", len(slices)),
                    opt("--node-rank", i),
                    opt("--dist-init-addr", t.node_addr(slices[0].node, f":{DIST_INIT_PORT}")),
                ]
            serves = i == 0
            role = "server" if len(slices) == 1 else ("head" if serves else "worker")
            http = [opt("--port", port + k)] if serves else []
            procs.append(
                Process(
                    node=s.node,
                    replicas=[k],
                    role=role,
                    port=port + k if serves else None,
                    gpus=list(s.gpus),
                    env=visible(s.gpus),
                    command=list(COMMAND),
                    options=[*opts, *multi, *http],
                )
            )
    nodes = 1 + max(p.node for p in procs)
    return Launch(engine="sglang", title=title(t, nodes), nodes=nodes, processes=procs, notes=notes)


def render(launch: Launch, fmt: str, *, config_path: str) -> str:
    if fmt == "cli":
        return render_shell(launch)
    return render_config(launch, config_path, base=COMMAND, lead={})
