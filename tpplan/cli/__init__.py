"""`tpplan` command line: a thin shell over `tpplan.api`. Heavy imports happen inside commands."""

from __future__ import annotations

import importlib

import click

from .. import __version__
from .common import TpplanGroup

# Each module defines click commands and a `COMMANDS` list; order is the order in --help.
COMMAND_MODULES = ("plan", "sweep", "demo")


@click.group(cls=TpplanGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tpplan")
def cli() -> None:
    """Plan how to split an LLM over GPUs: TP degree, pipeline stages, replicas.

    \b
    The path from a machine to a launch command:
      tpplan profiles                                   bundled hardware profiles
      tpplan candidates MODEL --profile dgx-h100        every TP x PP x replica layout: legal? fits? why not?
      tpplan sweep MODEL --tp 1,2,4                     measure layouts: real sharded forward passes, timed

    MODEL is a tpplan model.yaml, a Hugging Face config.json, or a bundled name
    (llama-3.1-70b, mixtral-8x7b, qwen2.5-32b, minicpm-2b, tiny, ...).
    """


for _name in COMMAND_MODULES:
    for _cmd in importlib.import_module(f"{__name__}.{_name}").COMMANDS:
        cli.add_command(_cmd)


def main() -> None:
    cli(prog_name="tpplan")
