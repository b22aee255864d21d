"""Where the bundled hardware profiles and model specs live.

A wheel carries them inside the package (`tpplan/_bundled/`, see pyproject.toml); an
editable install or a checkout finds them at the repository root. Nothing here reads
`../shared`: the tool must run from a user's clone alone.
"""

from __future__ import annotations

from pathlib import Path

from .errors import TpplanError

PROFILES = "hardware_profiles"
MODELS = "sweeps"


def data_dir(kind: str) -> Path:
    pkg = Path(__file__).resolve().parent
    for candidate in (pkg / "_bundled" / kind, pkg.parent / kind):
        if candidate.is_dir():
            return candidate
    raise TpplanError(f"bundled {kind}/ not found next to the tpplan package ({pkg}); reinstall tpplan")


def bundled_names(kind: str) -> list[str]:
    d = data_dir(kind)
    return sorted(p.stem for p in d.iterdir() if p.suffix in (".yaml", ".yml", ".json"))


def find_bundled(kind: str, name: str) -> Path | None:
    d = data_dir(kind)
    for suffix in ("", ".yaml", ".yml", ".json"):
        p = d / f"{name}{suffix}"
        if p.is_file():
            return p
    return None
