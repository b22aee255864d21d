"""Errors a user can cause, each rendered as one line by the CLI (never a traceback).

`ConfigError` names the file, the field, the offending value and what would be valid:

    ConfigError: sweeps/m.yaml: num_attention_heads: 0 is out of range; expected an integer >= 1
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from typing import Any


class TpplanError(Exception):
    """Base of every error that is the user's to fix; the CLI prints it in one line."""

    kind = "error"

    def one_line(self) -> str:
        return f"{self.kind}: " + " ".join(str(self).split())


class ConfigError(TpplanError):
    """Bad input: a file, field or flag whose value cannot be used."""

    kind = "ConfigError"

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        field: str | None = None,
        value: Any = None,
        expected: str | None = None,
        request: bool | None = None,
    ) -> None:
        # `field` names a request field (what a command was asked: renamed to its flag by the CLI)
        # unless the error is about a file's content; a file path given as a request value says so.
        self.request = file is None if request is None else request
        self.message, self.file, self.field, self.value, self.expected = message, file, field, value, expected
        parts = [p for p in (file, field) if p]
        head = ": ".join(parts)
        text = f"{head}: {message}" if head else message
        if expected:
            text += f"; expected {expected}"
        super().__init__(text)

    def renamed(self, name_of: Callable[[str], str]) -> ConfigError:
        """The same error with a request field named as the caller knows it (the CLI: its flag).
        A field of a file keeps its name: it is what the file says."""
        if not self.request or self.field is None:
            return self
        return ConfigError(
            self.message,
            file=self.file,
            field=name_of(self.field),
            value=self.value,
            expected=self.expected,
            request=True,
        )


class LayoutError(TpplanError):
    """A requested layout that cannot exist on the given hardware (e.g. TP larger than the GPUs)."""

    kind = "LayoutError"


def show_value(value: Any, limit: int = 60) -> str:
    """A value as it should appear inside an error line: repr'd, short, on one line. The repr is
    size-capped BEFORE it is built: a value expanded from YAML aliases can hold 10^9 items."""
    text = _REPR.repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_REPR = reprlib.Repr()  # Python 3.11's Repr takes no keywords
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 3, 6, 8, 8, 8
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 200, 200, 80
