"""Launch commands for a disaggregated plan: x prefill and y decode instances, and the router in
front of them, with each engine's own disaggregation flags.

- vLLM 0.33: every instance is a `vllm serve` with `--kv-transfer-config` naming the NixlConnector
  and its role (kv_producer on prefill instances, kv_consumer on decode instances), and its own NIXL
  side-channel port (VLLM_NIXL_SIDE_CHANNEL_PORT; vLLM adds the rank to it, so instances sharing a
  node are spaced by their size) and, across nodes, the address the other side reaches it at
  (VLLM_NIXL_SIDE_CHANNEL_HOST) (docs.vllm.ai features/nixl_connector_usage). The router is vLLM's
  own proxy, tests/v1/kv_connector/nixl_integration/toy_proxy_server.py in its source tree (it is
  not in the wheel): it sends each request to a prefill instance with max_tokens=1, then to a decode
  instance with the KV transfer parameters it got back.
- SGLang 0.5.23: `--disaggregation-mode prefill|decode` and `--disaggregation-transfer-backend`
  (mooncake, SGLang's default, written out), a bootstrap port per prefill instance
  (`--disaggregation-bootstrap-port`, default 8998, so instances sharing a node get their own), and
  `python -m sglang_router.launch_router --pd-disaggregation --prefill URL BOOTSTRAP_PORT ...
  --decode URL ...` (docs.sglang.io advanced_features/pd_disaggregation, sglang_router's README).
- Megatron-LM is a training framework: it serves no requests and has no prefill/decode split, so a
  disaggregated plan is refused for it.
"""

from __future__ import annotations

import dataclasses
import json

from ..errors import LayoutError
from ..placement import role_gpus
from ..records import EnvRef, Launch, Option, Process, Word
from . import sglang, vllm
from .common import ENGINE_NAMES, Target, check_plan, opt, visible

# Every flag this module writes besides the engine module's FLAGS (tests check them against the
# engines' parser dumps, reference/engines/*.tsv).
FLAGS = {
    "vllm": frozenset({"--kv-transfer-config"}),
    "sglang": frozenset({
        "--disaggregation-mode", "--disaggregation-transfer-backend", "--disaggregation-bootstrap-port",
    }),
}  # fmt: skip
VLLM_ROLE = {"prefill": "kv_producer", "decode": "kv_consumer"}
NIXL_SIDE_CHANNEL_PORT = 5600  # vLLM's default (vllm/envs.py)
VLLM_PROXY = "/tests/v1/kv_connector/nixl_integration/toy_proxy_server.py"
VLLM_ROUTER_PORT = 8192  # the port vLLM's NIXL examples give the proxy
SGLANG_BACKEND = "mooncake"  # --disaggregation-transfer-backend default (sglang_flags_all.tsv)
SGLANG_BOOTSTRAP_PORT = 8998  # --disaggregation-bootstrap-port default (sglang_flags_all.tsv)
SGLANG_ROUTER_PORT = 8000  # the port SGLang's PD docs give the router


def refuse_megatron() -> LayoutError:
    return LayoutError(
        "this plan is disaggregated (prefill and decode instances), and Megatron-LM is a training framework, "
        "not a serving engine: it has no prefill/decode split; emit it with --engine vllm or --engine sglang"
    )


def build(t: Target) -> Launch:
    plan = t.plan
    assert plan.prefill is not None
    if t.engine == "megatron":
        raise refuse_megatron()
    gpn = plan.profile.gpus_per_node
    roles = (("prefill", plan.prefill), ("decode", plan.layout))
    placed, problem = role_gpus(gpn, [(lay.tp, lay.pp, lay.replicas) for _, lay in roles])
    if problem:
        raise LayoutError(problem)
    multi_node = len({g // gpn for insts in placed for inst in insts for g in inst}) > 1
    port = t.base_port or (vllm.DEFAULT_PORT if t.engine == "vllm" else sglang.DEFAULT_PORT)
    procs: list[Process] = []
    notes: list[str] = []
    ends: dict[str, list[tuple[Word, int, int]]] = {"prefill": [], "decode": []}  # (host, port, bootstrap)
    k = 0  # instance number across both roles: its port, side-channel port and bootstrap port
    for (phase, lay), instances in zip(roles, placed, strict=True):
        one = dataclasses.replace(
            t, plan=plan.model_copy(update={"kind": "aggregated", "prefill": None, "layout": lay})
        )
        check_plan(one)
        opts, why = vllm.shared_options(one) if t.engine == "vllm" else sglang.shared_options(one, 1)
        notes += [f"{phase} instances: {w}" for w in why]
        for n, ranks in enumerate(instances):
            nodes = sorted({g // gpn for g in ranks})
            head = nodes[0]
            ends[phase].append((_host(t, head, multi_node), port + k, SGLANG_BOOTSTRAP_PORT + n))
            for i, node in enumerate(nodes):
                gpus = [g % gpn for g in ranks if g // gpn == node]
                env, extra = _role(t, phase, k, n, lay.world_size, node, multi_node)
                spread = _spread(t, len(nodes), i, head)
                serves = i == 0
                procs.append(
                    Process(
                        node=node,
                        replicas=[k],
                        role="server" if len(nodes) == 1 else ("head" if serves else "worker"),
                        phase=phase,  # type: ignore[arg-type]
                        port=port + k if serves else None,
                        gpus=gpus,
                        env={**visible(gpus), **env},
                        command=[*vllm.COMMAND, t.model_path] if t.engine == "vllm" else list(sglang.COMMAND),
                        options=[*opts, *extra, *spread, *_serve(t, serves, port + k)],
                    )
                )
            k += 1
    procs.append(_router(t, ends))
    notes.append(_router_note(t, plan.prefill.replicas, plan.layout.replicas))
    nodes = 1 + max(p.node for p in procs)
    title = (
        f"{plan.model.name} on {plan.prefill.gpus + plan.layout.gpus} x {plan.profile.gpu.name} "
        f"({plan.profile.name}, {nodes} node(s)), {ENGINE_NAMES[t.engine]}, disaggregated: prefill "
        f"{plan.prefill.label()} + decode {plan.layout.label()}"
    )
    return Launch(engine=t.engine, title=title, nodes=nodes, processes=procs, notes=notes)


def _host(t: Target, node: int, multi_node: bool) -> Word:
    return t.node_addr(node) if multi_node else "127.0.0.1"


def _role(
    t: Target, phase: str, k: int, n: int, world: int, node: int, multi_node: bool
) -> tuple[dict[str, Word], list[Option]]:
    """Environment and options that make an instance a prefill or a decode instance."""
    if t.engine == "vllm":
        config = json.dumps(
            {"kv_connector": "NixlConnector", "kv_role": VLLM_ROLE[phase]}, separators=(",", ":")
        )
        env: dict[str, Word] = {"VLLM_NIXL_SIDE_CHANNEL_PORT": str(NIXL_SIDE_CHANNEL_PORT + k * world)}
        if multi_node:
            env["VLLM_NIXL_SIDE_CHANNEL_HOST"] = t.node_addr(node)
        return env, [opt("--kv-transfer-config", config)]
    extra = [opt("--disaggregation-mode", phase), opt("--disaggregation-transfer-backend", SGLANG_BACKEND)]
    if phase == "prefill":
        extra.append(opt("--disaggregation-bootstrap-port", SGLANG_BOOTSTRAP_PORT + n))
    return {}, extra


def _spread(t: Target, nodes: int, i: int, head: int) -> list[Option]:
    """An instance over several nodes: the engine's multi-node flags (as vllm.py and sglang.py write them)."""
    if nodes == 1:
        return []
    if t.engine == "vllm":
        return [opt("--nnodes", nodes), opt("--node-rank", i), opt("--master-addr", t.node_addr(head))]
    addr = t.node_addr(head, f":{sglang.DIST_INIT_PORT}")
    return [opt("--nnodes", nodes), opt("--node-rank", i), opt("--dist-init-addr", addr)]


def _serve(t: Target, serves: bool, port: int) -> list[Option]:
    if serves:
        return [opt("--port", port)]
    return [opt("--headless")] if t.engine == "vllm" else []


def _router(t: Target, ends: dict[str, list[tuple[Word, int, int]]]) -> Process:
    """The router on node 0; its words go in the command (its list flags take several values)."""
    words: list[Word]
    if t.engine == "vllm":
        proxy = EnvRef(
            env="VLLM_SOURCE",
            meaning="a checkout of vLLM's source tree at the installed version (the proxy is in its tests/)",
            suffix=VLLM_PROXY,
        )
        words = ["python3", proxy, "--port", str(VLLM_ROUTER_PORT)]
        for phase, flag in (("prefill", "--prefiller"), ("decode", "--decoder")):
            words += [f"{flag}-hosts", *(h for h, _, _ in ends[phase])]
            words += [f"{flag}-ports", *(str(p) for _, p, _ in ends[phase])]
        port = VLLM_ROUTER_PORT
    else:
        words = ["python", "-m", "sglang_router.launch_router", "--pd-disaggregation"]
        for h, p, boot in ends["prefill"]:
            words += ["--prefill", _url(h, p), str(boot)]
        for h, p, _ in ends["decode"]:
            words += ["--decode", _url(h, p)]
        words += ["--host", "0.0.0.0", "--port", str(SGLANG_ROUTER_PORT)]
        port = SGLANG_ROUTER_PORT
    return Process(node=0, replicas=[], role="router", port=port, gpus=[], env={}, command=words, options=[])


def _url(host: Word, port: int) -> Word:
    if isinstance(host, EnvRef):
        return host.model_copy(update={"prefix": "http://", "suffix": f":{port}"})
    return f"http://{host}:{port}"


def _router_note(t: Target, x: int, y: int) -> str:
    if t.engine == "vllm":
        return (
            f"{x} prefill instance(s) (kv_producer) and {y} decode instance(s) (kv_consumer) over vLLM's NixlConnector "
            "(pip install nixl; UCX picks NVLink or the network); clients talk to the proxy, which sends each request "
            "to a prefill instance (max_tokens=1), then to a decode instance (docs.vllm.ai features/nixl_connector_usage)"
        )
    return (
        f"{x} prefill and {y} decode server(s) (--disaggregation-mode) with the {SGLANG_BACKEND} transfer engine "
        "(pip install mooncake-transfer-engine); clients talk to sglang_router (pip install sglang-router), which "
        "pairs a prefill and a decode server per request (docs.sglang.io advanced_features/pd_disaggregation)"
    )
