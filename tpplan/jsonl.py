"""Append-only JSONL files of records (a sweep's results.jsonl, a bench's bench.jsonl).

Each line goes out in one `write` on an O_APPEND descriptor and is fsync'd, so a run killed at
any moment leaves whole lines; a line cut by a crash mid-write is the only damage possible, and
reading the file for `--resume` trims it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import ConfigError
from .io import make_dir, output_error, validation_error

R = TypeVar("R", bound=BaseModel)


def read_jsonl(
    path: Path, cls: type[R], writer: str, repair: bool = False, skipped: list[str] | None = None
) -> list[R]:
    """Every record in `path`; with `repair`, a final line cut off mid-write is removed from the file.
    `writer`: the command that writes the file (`tpplan sweep`), named in messages.

    A line that is not a `cls` is a ConfigError naming file:line, unless `skipped` is given: then
    the line is left out and `skipped` gets a "file:line: why" note (a report shows what it can), as
    does a last line cut off mid-write (without `repair`, which says so itself)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n") and _whole(data[data.rfind(b"\n") + 1 :], cls):
        # the last record was written whole and only its newline is missing (an editor, a copy): keep it
        if repair:
            with open(path, "ab") as f:
                f.write(b"\n")
        data += b"\n"
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        if not repair:
            if skipped is not None:
                n = data[:cut].count(b"\n") + 1
                skipped.append(
                    f"{path}:{n}: the last line is cut off mid-write ({len(data) - cut} bytes; the run was "
                    f"interrupted, `{writer} --resume` measures that case again) (line skipped)"
                )
        else:
            with open(path, "r+b") as f:
                f.truncate(cut)
            print(f"{path}: removed a last line cut off mid-write ({len(data) - cut} bytes)", file=sys.stderr)
        data = data[:cut]
    out = []
    for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(cls.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as e:
            error = _bad_line(e, path, n, cls, writer)
            if skipped is None:
                raise error from None
            skipped.append(f"{error} (line skipped)")
    return out


def _whole(line: bytes, cls: type[R]) -> bool:
    try:
        cls.model_validate_json(line)
    except ValidationError:
        return False
    return True


def _bad_line(
    e: json.JSONDecodeError | ValidationError, path: Path, n: int, cls: type, writer: str
) -> ConfigError:
    if isinstance(e, json.JSONDecodeError):
        return ConfigError(
            f"line {n} is not JSON ({e.msg})",
            file=str(path),
            expected=f"one {cls.__name__} per line, as `{writer}` writes",
        )
    return validation_error(e, f"{path}:{n}")


class AppendFile(Generic[R]):
    """A run's output file, opened for appending; `records` and their `key`s are what it holds."""

    def __init__(self, path: Path, cls: type[R], writer: str, resume: bool) -> None:
        self.path = path
        make_dir(path.parent, "out")
        existing = read_jsonl(path, cls, writer, repair=resume)
        if existing and not resume:
            raise ConfigError(
                f"already holds {len(existing)} results",
                file=str(path),
                expected="--resume to continue that run, or another --out directory",
            )
        self.records: list[R] = existing
        self.keys = {r.key for r in existing}  # type: ignore[attr-defined]
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise output_error(e, path, field="out") from None

    def append(self, r: R) -> None:
        try:
            os.write(self._fd, (r.model_dump_json() + "\n").encode())
            os.fsync(self._fd)
        except OSError as e:  # a full disk: the line may be cut, which --resume trims
            raise output_error(e, self.path, field="out") from None
        self.records.append(r)
        self.keys.add(r.key)  # type: ignore[attr-defined]

    def close(self) -> None:
        os.close(self._fd)
