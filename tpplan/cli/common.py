"""Pieces every command shares: option decorators, one-line error rendering, tables, JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click

from ..errors import ConfigError, TpplanError
from .flags import flag_of


class TpplanGroup(click.Group):
    """Renders every TpplanError as one line on stderr (exit 2), and Ctrl-C as exit 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as e:  # a request field is shown as the flag that set it
            click.echo(e.renamed(flag_of).one_line(), err=True)
            ctx.exit(2)
        except TpplanError as e:
            click.echo(e.one_line(), err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:  # `tpplan ... | head`
            sys.stderr.close()
            ctx.exit(0)
        except OSError as e:  # a path the OS refused where no stage expected it: still one line naming it
            if e.filename is None:
                raise
            click.echo(f"error: {e.filename}: {e.strerror or type(e).__name__}", err=True)
            ctx.exit(2)


# The one meaning of `--kv-cache-dtype auto`, in every command's help (specs.resolve_kv_dtype computes it).
KV_AUTO_HELP = (
    "auto = what the engine picks: the checkpoint's KV dtype when it declares one (ModelOpt FP8 "
    "kv_cache_quant_algo / kv_cache_scheme), else the activation dtype (bf16 under fp8 weights), "
    "as vLLM's resolve_kv_cache_dtype_string."
)


def price_option(multiple: bool = False) -> Callable:
    """`--price-usd-per-gpu-hour`: the user's price replaces the profile's (prices.priced)."""
    if multiple:
        return click.option(
            "--price-usd-per-gpu-hour",
            "prices",
            multiple=True,
            metavar="[PROFILE=]USD",
            help="Price of one GPU for an hour, replacing the profile's published one; PROFILE=USD prices one "
            "of several --profile. Repeatable. Provenance: given on the command line.",
        )
    return click.option(
        "--price-usd-per-gpu-hour",
        "price",
        type=float,
        metavar="USD",
        help="Price of one GPU for an hour, replacing the profile's published one "
        "(provenance: given on the command line).",
    )


# numpy's and torch's generators take seeds in 0..2**32-1 (a larger one is numpy's traceback).
SEED_RANGE = click.IntRange(0, 2**32 - 1)


def json_option(f: Callable) -> Callable:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table."
    )(f)


def profile_option(required: bool = True, multiple: bool = False) -> Callable:
    help_text = "Hardware profile: a bundled name (dgx-h100; see `tpplan profiles`) or a YAML path."
    return click.option(
        "--profile", "profile", required=required, multiple=multiple, metavar="NAME|PATH", help=help_text
    )


def engine_option(choices: Sequence[str] = ("vllm", "megatron", "sglang"), default: str = "vllm") -> Callable:
    return click.option(
        "--engine",
        type=click.Choice(list(choices)),
        default=default,
        show_default=True,
        help="Serving/training engine whose rules apply.",
    )


def positive_int(name: str, value: int | None) -> int | None:
    if value is not None and value < 1:
        raise ConfigError(f"{value} is not allowed", field=name, expected="an integer >= 1")
    return value


def _jsonable(obj: Any) -> Any:
    """A record (pydantic model) as its JSON dump, anything else json does not know as its text."""
    dump = getattr(obj, "model_dump", None)
    return dump(mode="json") if dump is not None else str(obj)


def echo_json(data: Any) -> None:
    """`--json` output: records anywhere inside `data` are dumped as their JSON form."""
    click.echo(json.dumps(data, indent=2, default=_jsonable))


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str], align: str | None = None) -> str:
    """A plain-text table; `align` is one letter per column (l/r), numbers right-aligned by default."""
    rows = [[_cell(c) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, r, strict=True)]
    align = align or "".join(
        "r" if all(_numeric(r[i]) for r in rows) and rows else "l" for i in range(len(headers))
    )

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(cells, widths, align, strict=True)
        ).rstrip()

    lines = [fmt(list(headers)), fmt(["-" * w for w in widths])]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}" if value else "0"
    if isinstance(value, list):
        return _compact_list(value)
    return str(value)


def _compact_list(values: list) -> str:
    """[8, 8, 8, 8] → '8×4'; [5, 5, 4, 4] → '5×2,4×2'."""
    if not values:
        return "-"
    runs: list[tuple[Any, int]] = []
    for v in values:
        if runs and runs[-1][0] == v:
            runs[-1] = (v, runs[-1][1] + 1)
        else:
            runs.append((v, 1))
    return ",".join(f"{v}×{n}" if n > 1 else f"{v}" for v, n in runs)


def _numeric(text: str) -> bool:
    return text.replace(",", "").replace(".", "", 1).replace("-", "", 1).isdigit()
