"""Reading user files into validated records, and writing records back out.

Every way a file can be wrong (missing, a directory, not UTF-8, empty, bad YAML/JSON, not a
mapping, a field of the wrong type or out of range) becomes one `ConfigError` line naming
the file, the field, the value and what is valid.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from . import bundled, hub, safe_load
from .errors import ConfigError, show_value
from .records import Plan
from .specs import HardwareProfile, ModelSpec
from .specs.hf import spec_fields_from_hf

R = TypeVar("R", bound=BaseModel)

# Keys that mark a Hugging Face config.json rather than tpplan's own model.yaml.
HF_MARKERS = ("architectures", "model_type", "text_config", "num_hidden_layers", "n_layer")

# Caps on what tpplan reads, so a hostile or mistaken file fails in a second instead of running for
# minutes: the largest real input (a long sweep's results.jsonl) is a few MiB, a model or profile a few KiB.
MAX_INPUT_BYTES = 16 * 2**20  # calibration sources and results.jsonl, read line by line
MAX_MAPPING_BYTES = 2**20  # a YAML/JSON model, profile or plan (the largest bundled profile is ~10 KiB)


def read_text(path: Path, max_bytes: int = MAX_INPUT_BYTES) -> str:
    if not path.exists():
        raise ConfigError("no such file", file=str(path), expected="a path to a .yaml or .json file")
    if path.is_dir():
        raise ConfigError("is a directory", file=str(path), expected="a .yaml or .json file")
    try:
        with path.open("rb") as f:  # read one byte past the cap: a pipe or /dev/zero has no size to stat
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise ConfigError(f"cannot be read ({e.strerror})", file=str(path)) from None
    if len(data) > max_bytes:
        raise ConfigError(
            f"is larger than {max_bytes // 2**20} MiB", file=str(path), expected="a smaller input file"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})",
            file=str(path),
            expected="a UTF-8 YAML or JSON file",
        ) from None
    if not text.strip():
        raise ConfigError("is empty", file=str(path), expected="a YAML or JSON mapping of field: value")
    return text


def parse_mapping(text: str, file: str) -> dict[str, Any]:
    """YAML or JSON text (JSON by suffix, YAML otherwise; YAML also reads JSON) → a dict."""
    try:
        data = safe_load.load_json(text, file) if file.endswith(".json") else safe_load.load_yaml(text, file)
    except json.JSONDecodeError as e:
        raise ConfigError(f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}", file=file) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"invalid YAML{where}: {problem}", file=file) from None
    if not isinstance(data, dict):
        kind = type(data).__name__ if data is not None else "nothing"
        raise ConfigError(f"top level is {kind}", file=file, expected="a mapping of field: value")
    return data


def load_mapping(path: Path) -> dict[str, Any]:
    return parse_mapping(read_text(path, MAX_MAPPING_BYTES), str(path))


def validate(cls: type[R], data: Any, *, file: str, prefix: str = "") -> R:
    """`cls.model_validate(data)` with pydantic's errors turned into one ConfigError line."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise validation_error(e, file, prefix=prefix, cls=cls) from None


def validation_error(
    e: ValidationError, file: str, *, prefix: str = "", cls: type[BaseModel] | None = None
) -> ConfigError:
    errors = e.errors(include_url=False)
    first = errors[0]
    field = prefix + ".".join(str(p) for p in first["loc"])
    msg = first["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    more = f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})" if len(errors) > 1 else ""
    if first["type"] == "missing":
        return ConfigError(
            "is missing" + more, file=file, field=field or None, expected=_describe(cls, first["loc"])
        )
    if first["type"] == "extra_forbidden":
        return ConfigError(
            f"unknown field (value {show_value(first['input'])}){more}",
            file=file,
            field=field,
            expected="only the fields documented for this file",
        )
    value = first.get("input")
    expected = _expected(first)
    if expected and not isinstance(value, dict):
        return ConfigError(
            f"{show_value(value)} is not valid{more}", file=file, field=field or None, expected=expected
        )
    shown = "" if isinstance(value, dict) else f"{show_value(value)}: "
    return ConfigError(f"{shown}{msg}{more}", file=file, field=field or None)


def validate_request(cls: type[R], data: dict[str, Any]) -> R:
    """A command's request record from its arguments (records/requests.py). A bad value is one
    ConfigError naming the field, which the CLI shows as its flag: `gpus: 0 is not allowed; expected
    an integer >= 1`."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        if first["type"] == "value_error":  # a check of the request's own: its text says it all
            raise ConfigError(first["msg"].removeprefix("Value error, "), field=field) from None
        if first["type"] in ("missing", "extra_forbidden"):
            raise validation_error(e, "", cls=cls) from None
        value, expected = first.get("input"), _expected(first) or first["msg"]
        if isinstance(value, int) and not isinstance(value, bool):
            expected = expected.replace("a number", "an integer")
        raise ConfigError(f"{show_value(value)} is not allowed", field=field, expected=expected) from None


def _expected(err: dict) -> str | None:
    """What a valid value looks like, for pydantic's common error kinds."""
    ctx, kind = err.get("ctx") or {}, err["type"]
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        key = {"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le", "less_than": "lt"}[
            kind
        ]
        bound = ctx.get(key)
        return (
            f"a number {bounds[kind]} {bound:g}"
            if isinstance(bound, float)
            else f"a number {bounds[kind]} {bound}"
        )
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "an integer"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return "a finite number"
    if kind == "bool_type":
        return "true or false"
    if kind == "string_type":
        return "a string"
    if kind == "literal_error":
        return f"one of {ctx.get('expected')}"
    if kind in ("string_too_short", "too_short"):
        return "a non-empty value"
    return None


def _describe(cls: type[BaseModel] | None, loc: tuple) -> str | None:
    """The description of the field at `loc` in `cls`, to say what a missing field should hold."""
    info = None
    for part in loc:
        fields = getattr(cls, "model_fields", None)
        if not fields or part not in fields:
            return None
        info = fields[part]
        cls = next(
            (
                a
                for a in getattr(info.annotation, "__args__", (info.annotation,))
                if hasattr(a, "model_fields")
            ),
            None,
        )
    return info.description if info else None


# ---- models ---------------------------------------------------------------------------
def resolve(ref: str | os.PathLike, kind: str) -> Path:
    """A path as given, else a bundled name (`dgx-h100`, `llama-3.1-70b`)."""
    path = Path(ref)
    if path.exists():
        return path
    found = bundled.find_bundled(kind, str(ref))
    if found:
        return found
    what = "hardware profile" if kind == bundled.PROFILES else "model spec"
    names = ", ".join(bundled.bundled_names(kind))
    raise ConfigError(f"no such file or bundled {what}", file=str(ref), expected=f"a path or one of: {names}")


def load_model(ref: str | os.PathLike) -> ModelSpec:
    """A ModelSpec from tpplan's model.yaml or a Hugging Face config.json (by content), found by path,
    bundled name, or Hugging Face repo id (bundled or in the local HF cache; never downloaded)."""
    repo_id = _repo_id(ref)
    path = hub.find(repo_id) if repo_id else resolve(ref, bundled.MODELS)
    if path is None:
        raise ConfigError(
            f"Hugging Face repo {repo_id} is neither bundled nor in the local HF cache ({hub.cache_dir()}); "
            "tpplan never downloads",
            file=str(ref),
            expected=f"a path to its config.json, or a bundled repo id: {', '.join(hub.bundled_defaults())}",
        )
    data = load_mapping(path)
    spec = model_from_mapping(data, str(path), default_name=_model_name(data, path))
    # the plan serves the checkpoint the user named, not the bundled spec's default repo
    return spec.model_copy(update={"hf_id": repo_id}) if repo_id else spec


def _repo_id(ref: str | os.PathLike) -> str | None:
    """`org/name` that is not a file here nor a bundled name: a Hugging Face repo id."""
    text = str(ref)
    looks_like_file = Path(text).suffix in (".yaml", ".yml", ".json")  # a mistyped path stays "no such file"
    if looks_like_file or Path(text).exists() or bundled.find_bundled(bundled.MODELS, text):
        return None
    if not hub.is_repo_id(text):
        return None
    return text


def model_from_mapping(data: dict[str, Any], file: str, *, default_name: str) -> ModelSpec:
    # GPT-Neo's HF config names its depth num_layers, as tpplan's own model.yaml does
    hf_only = any(k in data for k in ("architectures", "model_type", "text_config"))
    if hf_only or (any(k in data for k in HF_MARKERS) and "num_layers" not in data):
        fields = spec_fields_from_hf(data, file, default_name)
        fields.setdefault("source", f"Hugging Face config {Path(file).name}")
        return validate(ModelSpec, fields, file=file)
    return validate(ModelSpec, data, file=file)


def _model_name(data: dict[str, Any], path: Path) -> str:
    name = data.get("name") or data.get("_name_or_path")
    if isinstance(name, str) and name.strip():
        return name.strip().rstrip("/").split("/")[-1]
    return path.parent.name if path.stem == "config" else path.stem


# ---- hardware profiles ----------------------------------------------------------------
def load_profile(ref: str | os.PathLike) -> HardwareProfile:
    path = resolve(ref, bundled.PROFILES)
    return validate(HardwareProfile, load_mapping(path), file=str(path))


def bundled_profiles() -> list[tuple[Path, HardwareProfile]]:
    d = bundled.data_dir(bundled.PROFILES)
    return [(p, load_profile(p)) for p in sorted(d.glob("*.yaml"))]


# ---- writing ----------------------------------------------------------------------------
def to_yaml(record: BaseModel, header: str = "", *, compact: bool = False) -> str:
    """Block-style YAML; `compact` puts each short collection of plain values on one line
    (`[X, NV12, PXB]`, `{gpu: 0, link: 3, active: true}`), for records with long tables."""
    data = record.model_dump(mode="json", exclude_defaults=False)
    dumper = _CompactDumper if compact else yaml.SafeDumper
    body = yaml.dump(data, Dumper=dumper, sort_keys=False, width=200 if compact else 100, allow_unicode=False)
    return (comment_lines(header) + "\n" if header else "") + body


def comment_lines(header: str) -> str:
    """`header` as YAML comment lines: a line break inside a path, study name or file name (a line
    not starting with #) is shown escaped, so tpplan can read back the file it wrote."""
    lines: list[str] = []
    for line in header.split("\n"):
        line = "".join(_escape(c) for c in line)
        if lines and not line.startswith("#"):
            lines[-1] += "\\n" + line
        else:
            lines.append(line)
    return "\n".join(lines)


def _escape(c: str) -> str:
    """YAML 1.1 also breaks lines at \\r, NEL, LS and PS; other control characters are unprintable."""
    return repr(c)[1:-1] if c in "\r\x85\u2028\u2029\ufeff" or (ord(c) < 32 and c != "\t") else c


class _CompactDumper(yaml.SafeDumper):
    pass


def _one_line(values: list) -> bool:
    """Plain values (or short lists of them) that fit on one line of `to_yaml(compact=True)`."""
    flat = [x for v in values for x in (v if isinstance(v, list) else [v])]
    plain = all(v is None or isinstance(v, str | int | float | bool) for v in flat)
    return plain and sum(len(str(v)) + 4 for v in flat) <= 180


_CompactDumper.add_representer(
    list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=_one_line(v))
)
_CompactDumper.add_representer(
    dict,
    lambda d, v: d.represent_mapping(
        "tag:yaml.org,2002:map", v.items(), flow_style=_one_line([*v, *v.values()])
    ),
)


def write_text(path: Path, text: str, *, field: str = "out") -> None:
    """Write through a temporary file and rename, so a reader never sees half a file."""
    write_bytes(path, text.encode("utf-8"), field=field)


def write_bytes(path: Path, data: bytes, *, field: str = "out") -> None:
    path = Path(path)
    make_dir(path.parent, field)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        if tmp.is_file():  # a full disk leaves the partial temporary file behind
            tmp.unlink()
        raise output_error(e, path, field=field) from None


def make_dir(path: Path, field: str = "out") -> Path:
    """`mkdir -p path`, a refusal (read-only, a file in the way, disk full) a ConfigError naming it."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(e, Path(path), field=field) from None
    return Path(path)


def output_error(e: OSError, path: Path, *, field: str) -> ConfigError:
    """An OSError met writing `path` (given by the request field `field`) as one line saying what to change."""
    why = {
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "read-only file system",
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EEXIST: f"{e.filename or path} is a file where a directory is needed",
        errno.ENOTDIR: f"a part of {e.filename or path} is a file, not a directory",
        errno.EISDIR: "is a directory",
        errno.ENAMETOOLONG: "the name is too long",
    }.get(e.errno or 0, e.strerror or type(e).__name__)
    return ConfigError(
        f"cannot be written: {why}", file=str(path), field=field, expected="a writable path", request=True
    )


# ---- plans ------------------------------------------------------------------------------
def load_plan(ref: str | os.PathLike) -> Plan:
    """A Plan from the YAML or JSON file `tpplan search` writes."""
    path = Path(ref)
    return validate(Plan, load_mapping(path), file=str(path))
