"""`tpplan` command line: a thin shell over `tpplan.api`. Heavy imports happen inside commands."""

from __future__ import annotations

import importlib

import click

from .. import __version__
from .common import TpplanGroup

# Each module defines click commands and a `COMMANDS` list; order is the order in --help.
COMMAND_MODULES = (
    "detect",
    "candidates",
    "sweep",
    "estimate",
    "calibrate",
    "search",
    "emit",
    "bench",
    "report",
    "demo",
)


@click.group(
    cls=TpplanGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, prog_name="tpplan")
def cli() -> None:
    """Plan how to split an LLM over GPUs: TP degree, pipeline stages, replicas.

    \b
    The path from a machine to a launch command:
      tpplan detect                                     this machine's GPUs, NVLink domains, HCAs -> profile
      tpplan profiles                                   bundled hardware profiles
      tpplan candidates MODEL --profile dgx-h100        every TP x PP x replica layout: legal? fits? why not?
      tpplan sweep MODEL --tp 1,2,4                     measure layouts: real sharded forward passes, timed
      tpplan estimate serve MODEL --profile P ...       TTFT, TPOT, tokens/$ from the cost model
      tpplan calibrate SOURCE --profile P --out P.yaml  fit the cost model to measurements
      tpplan search MODEL --profile dgx-h100 ...        most tokens/$ within the SLOs (Optuna) -> plan.yaml
      tpplan emit PLAN --engine vllm                    the plan's launch commands (vllm, megatron, sglang)
      tpplan bench PLAN --out DIR                       run the plan on the real engine, measured vs predicted
      tpplan report RUN_DIR --format html               figures and a Verdict of a run (sweep, search, plan)

    MODEL is a tpplan model.yaml, a Hugging Face config.json, or a bundled name
    (llama-3.1-70b, mixtral-8x7b, qwen2.5-32b, minicpm-2b, tiny, ...).
    """


for _name in COMMAND_MODULES:
    for _cmd in importlib.import_module(f"{__name__}.{_name}").COMMANDS:
        cli.add_command(_cmd)


def main(argv: list[str] | None = None) -> None:
    """Entry point. Usage errors (unknown flag, bad choice) print as one line too, not click's block."""
    try:
        # standalone_mode=False returns the exit code of ctx.exit() (TpplanGroup's errors) instead of raising
        rc = cli.main(argv, prog_name="tpplan", standalone_mode=False)
        raise SystemExit(rc if isinstance(rc, int) else 0)
    except click.exceptions.Exit as e:
        raise SystemExit(e.exit_code) from None
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        raise SystemExit(130) from None
    except click.exceptions.NoArgsIsHelpError as e:  # bare `tpplan`: show the help, as click would
        click.echo(e.format_message())
        raise SystemExit(0) from None
    except click.ClickException as e:
        hint = f" (see: {e.ctx.command_path} --help)" if getattr(e, "ctx", None) else ""
        click.echo(f"error: {' '.join(e.format_message().split())}{hint}", err=True)
        raise SystemExit(e.exit_code) from None
