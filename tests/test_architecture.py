"""The shape of the code, read from its imports (ast, nothing executed): no import cycle, the façade's
command modules independent of each other, the stages below the façade and the CLI, no file too long.

Every import counts, including those inside functions (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "tpplan"
MAX_LINES = 400
SHARED_API = "tpplan.api.refs"  # the one api module the command modules may import
# Command-level code: may call the façade (the CLI, the demo that runs the commands, `python -m tpplan`).
ABOVE_STAGES = ("tpplan.api", "tpplan.cli", "tpplan.demo", "tpplan.__main__")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The tpplan modules `name` imports; `from pkg import x` is pkg.x when x is a module, else pkg."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "tpplan"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "tpplan":
                continue
            subs = {f"{target}.{a.name}" for a in node.names} & known
            found |= subs or {target}
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {n: imports_of(n, p, set(mods)) for n, p in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as [a, b, ..., a], or None (iterative DFS, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(edges):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(edges[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(edges.get(nxt, ()))))
    return None


def top_level(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between tpplan's top-level modules and packages (tpplan.costmodel.x -> tpplan.costmodel)."""

    def top(m: str) -> str:
        return ".".join(m.split(".")[:2])

    out: dict[str, set[str]] = {}
    for a, bs in edges.items():
        if a != "tpplan":
            out.setdefault(top(a), set()).update(top(b) for b in bs if top(b) != top(a) and b != "tpplan")
    return out


@pytest.fixture(scope="module")
def edges() -> dict[str, set[str]]:
    return graph()


def test_the_cycle_finder_finds_a_planted_cycle():
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(planted) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_import_graph_is_read(edges):
    # Guards against a reader that silently sees nothing: known edges must be there.
    assert "tpplan.api.refs" in edges["tpplan.api.search"]
    assert "tpplan.candidates" in edges["tpplan.costmodel.deploy"]
    assert "tpplan.search.problem" in edges["tpplan.search"]


def test_no_import_cycle_between_modules(edges):
    assert find_cycle(edges) is None


def test_no_import_cycle_between_packages(edges):
    assert find_cycle(top_level(edges)) is None


def test_api_modules_import_no_other_api_module(edges):
    bad = [
        f"{a} imports {b}"
        for a, bs in edges.items()
        if a.startswith("tpplan.api.") and a != SHARED_API
        for b in bs
        if b.startswith("tpplan.api") and b != SHARED_API
    ]
    assert bad == []
    assert not {b for b in edges[SHARED_API] if b.startswith("tpplan.api")}


def test_stages_import_neither_the_api_nor_the_cli(edges):
    def above(m: str) -> bool:
        return any(m == a or m.startswith(a + ".") for a in ABOVE_STAGES)

    bad = [f"{a} imports {b}" for a, bs in edges.items() if not above(a) for b in bs if above(b)]
    assert bad == []


def test_no_file_over_the_line_limit():
    long = {
        str(p.relative_to(ROOT.parent)): n
        for p in ROOT.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_commands_reach_their_stage_in_two_hops(edges):
    """cli -> api -> stage: a CLI module imports the façade, the shared types (records, specs, errors,
    io) and its own package, never a stage directly (a stage's name the CLI shows is re-exported by
    its api module)."""
    shared = {"tpplan.api", "tpplan.cli", "tpplan.records", "tpplan.specs", "tpplan.errors", "tpplan.io"}
    shared |= {"tpplan", "tpplan.demo"}  # __version__; `tpplan demo` is the whole path, not a stage
    direct = sorted(
        (a, b)
        for a, bs in edges.items()
        for b in bs
        if a.startswith("tpplan.cli") and ".".join(b.split(".")[:2]) not in shared
    )
    assert any(a.startswith("tpplan.cli") for a in edges) and direct == []
