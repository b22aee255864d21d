"""A HardwareProfile from what was detected, with every number saying where it came from.

Measured here: GPU count and memory, NVLink counts and rates (NVML), HCA rates (sysfs), CPU
cores and RAM. Published: a GPU's TFLOP/s, HBM bandwidth and price, taken from the bundled
profile whose `gpu.nvml_names` lists the NVML name (data, not a chain of name tests).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping

from ..errors import ConfigError
from ..specs import HardwareProfile, Sourced, Topology
from ..specs.hardware import FabricSpec, NvlinkSpec, PcieSpec, PriceSpec
from . import graph

# PCIe per-lane signalling (GT/s) and line-code efficiency by generation (PCI-SIG base specs:
# 8b/10b to Gen2, 128b/130b Gen3-5, FLIT mode from Gen6, ~242/256 payload).
PCIE_LANE = {
    3: (8, 128 / 130),
    4: (16, 128 / 130),
    5: (32, 128 / 130),
    6: (64, 242 / 256),
    7: (128, 242 / 256),
}
NODE_ENV = ("SLURM_NNODES", "SLURM_JOB_NUM_NODES", "GROUP_WORLD_SIZE")


def node_count(flag: int | None, env: Mapping[str, str]) -> tuple[int, str]:
    """--nodes, else the launcher's environment (SLURM, torchrun), else 1; and why."""
    if flag is not None:
        return flag, "--nodes"
    for var in NODE_ENV:  # GROUP_WORLD_SIZE: torchrun's count of agents, one per node
        if env.get(var):
            return _positive(env, var), f"{var}={env[var]}"
    if env.get("WORLD_SIZE") and env.get("LOCAL_WORLD_SIZE"):
        world, local = _positive(env, "WORLD_SIZE"), _positive(env, "LOCAL_WORLD_SIZE")
        if world % local:
            raise ConfigError(
                f"WORLD_SIZE {world} is not a multiple of LOCAL_WORLD_SIZE {local}",
                field="environment",
                expected="torchrun's values, or --nodes N",
            )
        return world // local, f"WORLD_SIZE={world} / LOCAL_WORLD_SIZE={local} (torchrun)"
    return 1, "no --nodes and no SLURM or torchrun environment"


def _positive(env: Mapping[str, str], var: str) -> int:
    text = env[var].strip()
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(
            f"{text!r} is not a node count",
            field=f"environment variable {var}",
            expected="a positive integer, or pass --nodes N",
        )
    return int(text)


def match_bundled(gpu_name: str, bundled: list[HardwareProfile]) -> HardwareProfile | None:
    key = _name_key(gpu_name)
    return next((p for p in bundled if key in {_name_key(n) for n in p.gpu.nvml_names}), None)


def _name_key(name: str) -> str:
    words = name.lower().split()
    return " ".join(words[1:] if words[:1] == ["nvidia"] else words)


def domain_size(n_gpus: int, found: list[list[int]], *, unknown: frozenset[int] = frozenset()) -> int:
    """The largest d dividing the GPU count such that every aligned block of d GPUs lies in one
    domain: what HardwareProfile.domain_of(gpu) = gpu // d can say truthfully. GPUs that did not
    answer NVML (`unknown`) are left out of the test: their links are unknown, not absent."""
    where = {g: k for k, dom in enumerate(found) for g in dom if g not in unknown}
    for d in sorted((d for d in range(1, n_gpus + 1) if n_gpus % d == 0), reverse=True):
        blocks = ({where[g] for g in range(s, s + d) if g in where} for s in range(0, n_gpus, d))
        if all(len(b) <= 1 for b in blocks):
            return d
    return 1


def gpu_profile(
    topo: Topology,
    bundled: list[HardwareProfile],
    *,
    nodes: tuple[int, str],
    price: Sourced | None,
    date: str,
) -> tuple[HardwareProfile, list[str]]:
    """The profile of this GPU node, and warnings about numbers that could not be sourced."""
    warnings: list[str] = []
    answered = [g for g in topo.gpus if g.name]
    name = Counter(g.name for g in answered).most_common(1)[0][0]
    if len({g.name for g in answered}) > 1:
        warnings.append(
            f"GPUs of different kinds ({', '.join(sorted({g.name for g in answered}))}); profiled as {name}"
        )
    match = match_bundled(name, bundled)
    published = _published(name, match, warnings)
    mems = [g.memory_mib for g in answered if g.memory_mib]
    memory = (
        Sourced(
            value=round(min(mems) / 1024, 2),
            basis="measured",
            source=f"NVML nvmlDeviceGetMemoryInfo on {topo.host}: {min(mems)} MiB total (smallest of {len(mems)} GPUs)",
        )
        if mems
        else published["memory_gib"]
    )
    n = len(topo.gpus)
    nvlink = _nvlink(topo, match, warnings)
    fabric = _fabric(topo, bundled, warnings)
    if fabric is None and nodes[0] > 1:
        # Without a fabric every layout that spans nodes is judged invalid; say so here, not at candidates.
        warnings.append(
            f"{nodes[0]} nodes, but no InfiniBand/RoCE port was found on this one: layouts across nodes "
            "will be invalid; add `inter_node` to the profile by hand, or detect on a node with its HCAs up"
        )
    cost = PriceSpec(usd_per_gpu_hour=price, date=date) if price else _price(name, match, date, warnings)
    profile = HardwareProfile(
        name=f"detected-{topo.host}",
        description=f"{n}x {name} on {topo.host}, detected by tpplan detect",
        backend="nccl",
        gpu={**published, "name": name, "memory_gib": memory},
        gpus_per_node=n,
        nodes=nodes[0],
        nvlink=nvlink,
        pcie=_pcie(topo, match),
        inter_node=fabric,
        price=cost,
        notes=[
            f"detected on {topo.host} from {topo.source}",
            f"nodes: {nodes[0]} ({nodes[1]})",
            *topo.warnings,
            *warnings,
        ],
        topology=topo,
    )
    return profile, warnings


def _published(name: str, match: HardwareProfile | None, warnings: list[str]) -> dict:
    if match is None:
        warnings.append(
            f"{name} is in no bundled profile (gpu.nvml_names): its TFLOP/s and HBM bandwidth are "
            "placeholders marked assumed; edit them in the written profile"
        )
        stub = Sourced(
            value=1, basis="assumed", source=f"placeholder: no published number for {name} in tpplan"
        )
        return {"memory_gib": stub, "bf16_dense_tflops": stub, "hbm_gbps": stub}
    src = f"bundled profile {match.name}"
    return {
        k: cite(getattr(match.gpu, k), src)
        for k in ("memory_gib", "bf16_dense_tflops", "fp8_dense_tflops", "hbm_gbps")
        if getattr(match.gpu, k)
    }


def cite(q: Sourced, where: str) -> Sourced:
    """The same number, its source prefixed with where tpplan took it from."""
    return q.model_copy(update={"source": f"{where}: {q.source}"})


def _nvlink(topo: Topology, match: HardwareProfile | None, warnings: list[str]) -> NvlinkSpec | None:
    n = len(topo.gpus)
    # The domain size comes from the GPUs whose domain is known; the others (no handle, or up
    # links to ends NVML could not read) are unknown, neither separate nor joined.
    unknown = frozenset(graph.membership_unknown(topo.gpus, topo.nvlinks))
    assumed = sorted({g for g, _ in graph.like_peers(topo.gpus, topo.nvlinks)})
    d = domain_size(n, topo.domains, unknown=unknown) if len(unknown) < n else 1
    if unknown:
        known = sorted(set(range(n)) - unknown)
        warnings.append(
            f"NVLink domain of GPU(s) {graph.span(unknown)} unknown: the domain size {d} comes from "
            + (
                f"GPU(s) {graph.span(known)}; GPU(s) {graph.span(unknown)} assumed in domain i // {d} like their peers"
                if known
                else "no GPU (none has a known domain), assumed"
            )
        )
    if assumed:
        warnings.append(
            f"NVLink domain size {d} counts GPU(s) {graph.span(assumed)} as assumed: links up, remote "
            "ends unread, taken to reach the NVSwitches their peers reach"
        )
    in_domains = {g for dom in topo.domains if len(dom) > 1 for g in dom}
    if in_domains and d < max(topo.domain_sizes):
        warnings.append(
            f"NVLink domains {topo.domains} are not aligned blocks of equal size; the profile models "
            f"domains of {d} GPU(s) (GPU i in domain i // {d}), which never overstates them"
        )
    nvswitch = any(k.active and k.remote_kind == "nvswitch" for k in topo.nvlinks)
    # NVL72: NVSwitch trays join this host's GPUs to other hosts', which NVML on one host cannot
    # see. Only a bundled profile whose own domain spans nodes of this size says so; a container
    # seeing 4 of a DGX's 8 GPUs keeps the 4 it has.
    spans_nodes = match and match.nvlink and match.nvlink.domain_size_gpus > match.gpus_per_node == n
    if spans_nodes and nvswitch and d == n:
        d = match.nvlink.domain_size_gpus
        warnings.append(
            f"NVML on one host sees {n} GPUs on NVSwitch; bundled profile {match.name} says the "
            f"domain spans {d} GPUs across nodes, which the profile uses"
        )
    if d < 2:
        return None
    # A GPU with a link of unknown state has an unknown count: the fewest comes from the others.
    counted = [g for g in topo.gpus if g.index in in_domains]
    read = [g for g in counted if g.nvlinks_total == sum(k.gpu == g.index for k in topo.nvlinks)] or counted
    links = min(g.nvlinks_active for g in read)
    if len(read) < len(counted):
        odd = sorted(g.index for g in counted if g not in read)
        warnings.append(
            f"NVLink bandwidth per GPU counts {links} links (fewest of GPUs {graph.span([g.index for g in read])}); "
            f"GPU(s) {graph.span(odd)} have links of unknown state and are assumed like them"
        )
    unread = (
        f"; GPU(s) {graph.span(odd)} with links of unknown state assumed like the others"
        if len(read) < len(counted)
        else ""
    )
    speeds = [k.speed_gbps for k in topo.nvlinks if k.active and k.speed_gbps]
    versions = Counter(k.version for k in topo.nvlinks if k.active and k.version)
    major = versions.most_common(1)[0][0].split(".")[0] if versions else None
    if speeds:
        # NVML's rate is the link's signalling rate (H100: 26.562 GB/s where NVIDIA quotes 25 of
        # payload); the published figure is kept beside it for comparison.
        quoted = (
            f"; published: {match.nvlink.per_gpu_unidir_gbps.value:g} GB/s ({match.name})"
            if (match and match.nvlink)
            else ""
        )
        per_gpu = Sourced(
            value=round(links * min(speeds), 2),
            basis="derived",
            source=f"NVML on {topo.host}: {links} active NVLinks per GPU (fewest of any GPU) x "
            f"{min(speeds):g} GB/s per link per direction (NVLINK_SPEED_MBPS_COMMON){quoted}{unread}",
        )
    elif match and match.nvlink:
        per_gpu = cite(match.nvlink.per_gpu_unidir_gbps, f"bundled profile {match.name}")
    else:
        per_gpu = Sourced(
            value=links * 25,
            basis="assumed",
            source=f"{links} links x 25 GB/s per direction, NVLink 2-4's per-link rate "
            "(github:stas00/ml-engineering network/README.md @0030e63); NVML gave no speed",
        )
    generation = (
        f"NVLink{major}" if major else (match.nvlink.generation if match and match.nvlink else "NVLink")
    )
    return NvlinkSpec(
        generation=generation + ("" if nvswitch else " bridge"),
        domain_size_gpus=d,
        per_gpu_unidir_gbps=per_gpu,
        nvswitch=nvswitch,
        in_switch_reduction=bool(nvswitch and match and match.nvlink and match.nvlink.in_switch_reduction),
    )


def _pcie(topo: Topology, match: HardwareProfile | None) -> PcieSpec:
    gens = [g.pcie_generation for g in topo.gpus if g.pcie_generation in PCIE_LANE]
    widths = [g.pcie_width for g in topo.gpus if g.pcie_width]
    if not gens:
        return (
            match.pcie
            if match
            else PcieSpec(
                generation=4,
                per_gpu_unidir_gbps=Sourced(
                    value=31.5, basis="assumed", source="NVML gave no PCIe link generation; Gen4 x16 assumed"
                ),
            )
        )
    gen, width = min(gens), min(widths) if widths else 16
    gts, code = PCIE_LANE[gen]
    return PcieSpec(
        generation=gen,
        per_gpu_unidir_gbps=Sourced(
            value=round(gts * width * code / 8, 1),
            basis="derived",
            source=f"NVML on {topo.host}: PCIe Gen{gen} x{width} (max link); {gts} GT/s per lane x {width} lanes "
            f"x {code:.3f} line code / 8 bits",
        ),
    )


def _fabric(topo: Topology, bundled: list[HardwareProfile], warnings: list[str]) -> FabricSpec | None:
    """The ports GPUs would send through: active ones within a PCIe switch of a GPU (where GPUDirect
    RDMA works, NCCL's default NCCL_NET_GDR_LEVEL=PXB), else any active port near a GPU."""
    active = [h for h in topo.hcas if h.active and h.kind]
    near = (
        [h for h in active if any(lv in ("PIX", "PXB") for lv in h.gpu_levels)]
        or [h for h in active if h.nearest_gpus]
        or active
    )
    if not near:
        if topo.hcas:
            warnings.append(
                "no active InfiniBand/RoCE port of a known kind: no inter-node fabric in the profile"
            )
        return None
    kind = Counter(h.kind for h in near).most_common(1)[0][0]
    chosen = [h for h in near if h.kind == kind]
    gbit = sum(h.rate_gbit_per_s for h in chosen)
    n = max(1, len(topo.gpus))
    like = next((p.inter_node for p in bundled if p.inter_node and p.inter_node.kind == kind), None)
    latency = (
        cite(like.latency_us, "bundled profile with the same fabric")
        if like
        else Sourced(
            value=5, basis="assumed", source=f"no {kind} latency in tpplan's profiles; order of a network hop"
        )
    )
    return FabricSpec(
        kind=kind,
        latency_us=latency,
        per_gpu_gbps=Sourced(
            value=round(gbit / 8 / n, 2),
            basis="derived",
            source=f"sysfs on {topo.host}: {len(chosen)} active {kind} port(s) "
            f"({', '.join(h.label for h in chosen)}) x {chosen[0].rate_gbit_per_s:g} Gb/s / 8 bits / {n} GPUs",
        ),
    )


def _price(name: str, match: HardwareProfile | None, date: str, warnings: list[str]) -> PriceSpec:
    if match:
        return PriceSpec(
            usd_per_gpu_hour=cite(match.price.usd_per_gpu_hour, f"bundled profile {match.name}"),
            date=match.price.date,
        )
    warnings.append(f"no price known for {name}: pass --price-usd-per-gpu-hour")
    return PriceSpec(
        usd_per_gpu_hour=Sourced(value=1, basis="assumed", source="placeholder: no price known"), date=date
    )


def user_price(value: float, date: str) -> Sourced:
    if not (0 < value <= 10_000 and math.isfinite(value)):
        raise ConfigError(
            f"{value!r} is not a price",
            field="price_usd_per_gpu_hour",
            expected="USD per GPU-hour in (0, 10000]",
        )
    return Sourced(
        value=value,
        basis="given",
        source=f"given on the command line (--price-usd-per-gpu-hour {value:g}) on {date}",
    )
