"""`tpplan demo`."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/demo"),
    show_default=True,
    help="Run directory for everything the demo writes.",
)
def demo(out: Path) -> None:
    """Run the whole path on embedded defaults (no downloads, no GPU needed).

    \b
    Example:
      tpplan demo --out runs/demo
    """
    from .. import demo as demo_mod

    demo_mod.run(out, click.echo)


COMMANDS = [demo]
