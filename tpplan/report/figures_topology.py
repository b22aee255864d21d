"""The topology figure: GPUs grouped by NVLink domain per node, the network ports, and the plan's TP
groups drawn over them, so one sees whether a TP group stays inside an NVLink domain.

The machine drawn is the detected one (profile.yaml from `tpplan detect`) when it has GPUs, else the
plan's hardware profile (bundled or calibrated), which only gives domain sizes and the network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from matplotlib.patches import FancyBboxPatch, Rectangle

from .data import RunData
from .plot import Drawn, figure_data, new_figure, series

PORT_STEP = 0.5  # vertical distance between stacked port labels, in GPU widths
_INSTANCE_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]


@dataclass
class Machine:
    """What the figure draws: nodes of GPUs, each node's NVLink domains, and labelled network ports."""

    source: str  # "detected" or "profile"
    title: str
    gpus_per_node: int
    nodes: int
    domains: list[list[int]]  # global GPU indices, each domain within one node
    ports: list[tuple[str, list[int]]] = field(default_factory=list)  # (label, nearest GPUs) on node 0
    network: str = ""  # one line on the inter-node fabric
    # A rack-scale NVLink domain (GB200 NVL72: 18 trays of 4 GPUs) is drawn as one "node" of `tray`-GPU
    # trays, `row_gpus` to a line, so 72 GPUs make a readable block rather than 18 rows or one long line.
    tray: int = 0
    row_gpus: int = 0


def _machine(data: RunData) -> Machine | str:
    det = data.detected
    plan = data.plan
    used = max((g for inst in data.winner_groups for grp in inst for g in grp), default=-1) + 1
    if det is not None and det.topology is not None and det.topology.gpus:
        topo = det.topology
        n = len(topo.gpus)
        inside = {g for d in topo.domains for g in d}
        domains = [list(d) for d in topo.domains] + [[g.index] for g in topo.gpus if g.index not in inside]
        nodes = max(1, math.ceil(used / n)) if plan is not None and plan.profile.gpus_per_node == n else 1
        domains = [[g + k * n for g in d] for k in range(nodes) for d in domains]
        ports = [
            (f"{h.label}\n{h.rate_gbit_per_s:g}G{'' if h.active else ' DOWN'}", list(h.nearest_gpus))
            for h in topo.hcas
        ]
        return Machine(
            "detected",
            f"{det.gpu.name} on {topo.host} (tpplan detect"
            + ("; other nodes drawn alike)" if nodes > 1 else ")"),
            n,
            nodes,
            domains,
            ports,
            _network(det),
        )
    if plan is None:
        why = "profile.yaml has no GPUs (a CPU profile)" if det is not None else "no profile.yaml"
        return f"no GPU topology to draw: {why} and no plan.yaml whose hardware profile would stand in"
    p = plan.profile
    gpn = p.gpus_per_node
    nodes = max(p.nodes, math.ceil(used / gpn))
    if p.domain_size > gpn:  # one NVLink domain over several nodes: draw each domain as one block
        racks = math.ceil(nodes * gpn / p.domain_size)
        domains = [list(range(r * p.domain_size, (r + 1) * p.domain_size)) for r in range(racks)]
        title = (
            f"{p.gpu.name}: NVLink domain of {p.domain_size} GPUs over {p.domain_size // gpn} nodes of {gpn}"
        )
        row_gpus = gpn * max(1, min(p.domain_size // gpn, round(math.sqrt(p.domain_size / gpn / 2))))
        return Machine(
            "profile",
            f"{title} (profile {p.name})",
            p.domain_size,
            racks,
            domains,
            [],
            _network(p),
            gpn,
            row_gpus,
        )
    size = min(p.domain_size, gpn) if p.domain_size > 1 else 1
    domains = [list(range(s, min(s + size, (s // gpn + 1) * gpn))) for s in range(0, nodes * gpn, size)]
    return Machine(
        "profile", f"{p.gpu.name} x{gpn} per node (profile {p.name})", gpn, nodes, domains, [], _network(p)
    )


def _network(p) -> str:
    if p.inter_node is None:
        return "no inter-node fabric in the profile"
    return f"between nodes: {p.inter_node.kind}, {p.inter_node.per_gpu_gbps.value:g} GB/s per GPU"


def topology(data: RunData) -> Drawn | str:
    m = _machine(data)
    if isinstance(m, str):
        return m
    local_x, x = {}, 0.0  # node-local GPU -> x: domains left to right, a gap between domains
    local_y: dict[int, float] = {}  # node-local GPU -> rows below the node's first (wrapped domains)
    for d in (d for d in m.domains if d[0] < m.gpus_per_node):
        for g in d:
            if m.row_gpus:  # trays of m.tray GPUs, m.row_gpus to a line, a gap between trays
                col = g % m.row_gpus
                local_x[g], local_y[g] = col + 0.5 * (col // m.tray), -1.2 * (g // m.row_gpus)
                continue
            local_x[g] = x
            x += 1.0
        x += 0.5
    lines = 1 + int(-min(local_y.values(), default=0.0) / 1.2)
    # Each port sits under the GPUs nearest to it; ports sharing a spot stack downwards.
    anchors, stack = [], {}
    for label, near in m.ports:
        ax_x = sum(local_x[g] for g in near) / len(near) if near else -1.0
        anchors.append((label, ax_x, stack.get(ax_x, 0)))
        stack[ax_x] = stack.get(ax_x, 0) + 1
    row = 2.0 + PORT_STEP * max(stack.values(), default=1) + 1.2 * (lines - 1)
    pos = {
        g + k * m.gpus_per_node: (lx, -row * k + local_y.get(g, 0.0))
        for k in range(m.nodes)
        for g, lx in local_x.items()
    }
    width = max(local_x.values()) + 2
    fig, ax = new_figure(max(7, 0.75 * width + 1), 1.2 + 1.6 * m.nodes * row / 2.0)
    drawn = []
    for i, d in enumerate(m.domains):
        xs, ys = [pos[g][0] for g in d], [pos[g][1] for g in d]
        y = pos[d[0]][1]
        ax.add_patch(
            FancyBboxPatch(
                (min(xs) - 0.45, min(ys) - 0.45),
                max(xs) - min(xs) + 0.9,
                max(ys) - min(ys) + 0.9,
                boxstyle="round,pad=0.05",
                facecolor="#e8f0fb",
                edgecolor="#4c72b0",
            )
        )
        label = "NVLink domain" if len(d) > 1 else "no NVLink"
        ax.text(
            min(xs) - 0.45,
            y + 0.58,
            f"{label} ({len(d)} GPU{'s' * (len(d) > 1)})",
            fontsize=7,
            color="#4c72b0",
        )
        drawn.append(series(f"domain {i}", m.source, x=d, y=[y] * len(d)))
    groups = data.winner_groups
    plan = data.plan
    crossing = []
    for g, (x, y) in pos.items():
        ax.add_patch(
            Rectangle((x - 0.35, y - 0.3), 0.7, 0.6, facecolor="white", edgecolor="black", linewidth=0.8)
        )
        ax.text(x, y + 0.12, f"GPU{g}", ha="center", fontsize=7)
    domain_of = {g: i for i, d in enumerate(m.domains) for g in d}
    for k, inst in enumerate(groups):
        colour = _INSTANCE_COLOURS[k % len(_INSTANCE_COLOURS)]
        for s, grp in enumerate(inst):
            for g in grp:
                if g in pos:
                    x, y = pos[g]
                    ax.add_patch(
                        Rectangle(
                            (x - 0.35, y - 0.3),
                            0.7,
                            0.6,
                            facecolor=colour,
                            alpha=0.35,
                            edgecolor=colour,
                            linewidth=2.5,
                        )
                    )
                    ax.text(x, y - 0.18, f"R{k} S{s}", ha="center", fontsize=6.5)
            if len({domain_of.get(g, -1) for g in grp}) > 1:
                crossing.append(f"instance {k} stage {s}")
            drawn.append(series(f"instance {k} stage {s} TP group", "profile", x=grp, y=[k] * len(grp)))
    for k in range(m.nodes):
        y = -row * k
        ax.text(
            -0.9,
            y,
            f"{'rack' if m.tray else 'node'} {k}",
            ha="right",
            va="center",
            fontsize=8,
            fontweight="bold",
        )
        for label, px, level in anchors:
            down = "DOWN" in label
            ax.text(
                px,
                y - 0.75 - PORT_STEP * level,
                label,
                ha="center",
                va="top",
                fontsize=5.5,
                color="#d62728" if down else "#555555",
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "#f4f4f4", "edgecolor": "#aaaaaa"},
            )
        if not m.ports:
            ax.text(-0.45, y - 0.85 - 1.2 * (lines - 1), m.network, fontsize=6.5, color="#555555")
        else:
            drawn.append(
                series(
                    f"node {k} HCAs near GPUs",
                    m.source,
                    x=[g for _, gs in m.ports for g in gs],
                    y=[y] * sum(len(gs) for _, gs in m.ports),
                )
            )
    ax.set_xlim(-2.2, width)
    ax.set_ylim(
        -row * (m.nodes - 1) - 1.2 * (lines - 1) - 1.0 - PORT_STEP * max(stack.values(), default=1), 1.0
    )
    ax.set_xlabel("GPUs of each node, grouped by NVLink domain (index = global GPU number)")
    ax.set_ylabel("node (one row each)")
    ax.set_xticks([])
    ax.set_yticks([])
    where = f"plan {plan.layout.label()}" if plan is not None and groups else "no plan"
    ax.set_title(f"{m.title}; coloured: {where} (R = instance, S = pipeline stage)", fontsize=9)
    crosses_cands = sorted(
        {f"TP={c.tp}" for c in data.candidates if c.crosses_nvlink_domain}, key=lambda t: int(t[3:])
    )
    read = (
        f"the plan's TP groups cross an NVLink domain ({', '.join(crossing)})"
        if crossing
        else "every TP group of the plan stays inside one NVLink domain"
        if groups
        else "no plan to place"
    )
    if crosses_cands:
        read += f"; {', '.join(crosses_cands)} would cross one (candidates.json)"
    caption = f"Boxes are NVLink domains, coloured GPUs the plan's TP groups ({m.source} topology): {read}."
    return Drawn(
        fig,
        figure_data(
            "topology",
            "Topology and the plan's placement",
            caption=caption,
            x_label="GPU (index, grouped by NVLink domain)",
            y_label="node (row)",
            drawn=drawn,
        ),
    )
