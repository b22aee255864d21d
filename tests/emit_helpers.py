"""Plans and engine flag tables shared by the emit tests (not a test module)."""

from __future__ import annotations

import csv
import shlex
from pathlib import Path

from tpplan import bundled, io
from tpplan.records import Launch, Layout, Plan

GPU_PROFILES = (
    "dgx-h100",
    "dgx-a100-80g",
    "hgx-b200",
    "l40s-8x-pcie",
    "gb200-nvl72",
    "a100-pcie-8x-nvlink-pairs",
)
LAYOUTS = [(1, 1, 1), (2, 1, 4), (4, 1, 2), (8, 1, 1), (8, 2, 1), (4, 2, 2), (16, 1, 1), (2, 4, 1), (1, 2, 3)]


def make_plan(
    model: str = "llama-3.1-70b",
    profile: str = "dgx-h100",
    tp: int = 8,
    pp: int = 1,
    replicas: int = 1,
    **fields,
) -> Plan:
    fields.setdefault("max_model_len", 4096)
    fields.setdefault("max_num_seqs", 64)
    return Plan(
        model=io.load_model(model),
        profile=io.load_profile(profile),
        engine=fields.pop("engine", "vllm"),
        layout=Layout(tp=tp, pp=pp, replicas=replicas),
        **fields,
    )


def bundled_models() -> list[str]:
    return bundled.bundled_names(bundled.MODELS)


def engine_flags(reference: Path, engine: str) -> dict[str, dict[str, str]]:
    """Every option string of the engine's live-parser dump → its row (type, choices, ...)."""
    name = {"vllm": "vllm_flags.tsv", "megatron": "megatron_flags.tsv", "sglang": "sglang_flags_all.tsv"}[
        engine
    ]
    out = {}
    with open(reference / "engines" / name, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            for flag in row["flags"].split("/"):
                out[flag] = row
    return out


def argv_of(text: str) -> list[list[str]]:
    """Each command line of an emitted script, as the shell would split it (comments and `&`/`wait` dropped)."""
    joined = text.replace("\\\n", " ")
    out, pending = [], ""
    for line in joined.split("\n"):
        if not pending and (not line.strip() or line.lstrip().startswith("#") or line.strip() == "wait"):
            continue
        pending = f"{pending}\n{line}" if pending else line
        try:
            words = shlex.split(pending)
        except ValueError:  # a quoted value holds a newline: the command goes on
            continue
        pending = ""
        out.append(words[:-1] if words[-1] == "&" else words)
    assert not pending, pending
    return out


def option_values(launch: Launch) -> list[tuple[str, object]]:
    return [(o.flag, o.value) for p in launch.processes for o in p.options]
