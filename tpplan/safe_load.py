"""Parsing YAML and JSON with caps, so a hostile or mistaken file fails in a second: the nesting depth is
checked on the parser's events (which do not recurse) and the size after alias expansion on the node graph,
before any value is built ("billion laughs": 10 aliases x 9 levels is 10^9 values from 300 bytes).
`io.parse_mapping` is the one caller."""

from __future__ import annotations

import json
from typing import Any

import yaml

from .errors import ConfigError

MAX_NESTING = 100  # HF configs nest 3-4 deep; Python's recursion limit is 1000
MAX_YAML_NODES = 200_000  # values after alias expansion: a 10-alias x 9-level "billion laughs" is 10^9


def _too_deep(file: str) -> ConfigError:
    return ConfigError(
        f"nests deeper than {MAX_NESTING} levels", file=file, expected=f"at most {MAX_NESTING} levels"
    )


def _too_many(file: str, how: str = "") -> ConfigError:
    return ConfigError(
        f"holds more than {MAX_YAML_NODES:,} values{how}",
        file=file,
        expected="a model, profile or plan file (a few hundred values; no aliases that multiply them)",
    )


def load_json(text: str, file: str) -> Any:
    try:
        data = json.loads(text)
    except RecursionError:
        raise _too_deep(file) from None
    stack = [(data, 1)]  # depth checked without recursion: the records below recurse on it
    while stack:
        value, depth = stack.pop()
        if depth > MAX_NESTING:
            raise _too_deep(file)
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((c, depth + 1) for c in children)
    return data


def load_yaml(text: str, file: str) -> Any:
    """`yaml.safe_load` with the depth checked on the parser's events (which do not recurse) and the
    size after alias expansion counted on the node graph before any value is built."""
    depth = 0
    for n, event in enumerate(yaml.parse(text, Loader=_Loader)):
        if n > MAX_YAML_NODES:
            raise _too_many(file)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_NESTING:
                raise _too_deep(file)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        sizes: dict[int, int] = {}
        if _expanded_size(node, sizes, set()) > MAX_YAML_NODES:
            raise _too_many(file, " once its aliases are expanded")
        return loader.construct_document(node)
    finally:
        loader.dispose()


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int:
    """Values `node` holds once every alias is expanded; a node reached again costs its size again."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise yaml.YAMLError("a recursive alias (an anchor used inside itself)")
    open_.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(c, sizes, open_) for c in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_expanded_size(k, sizes, open_) + _expanded_size(v, sizes, open_) for k, v in node.value)
    open_.discard(key)
    sizes[key] = total = min(total, MAX_YAML_NODES + 1)
    return total
