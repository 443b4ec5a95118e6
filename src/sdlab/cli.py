"""The `sdlab` command line: one entry point, one subcommand per capability.

    sdlab --help
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from sdlab import SdlabError

app = typer.Typer(
    help="sdlab: probe, train (GRPO / self-distillation / SFT), sweep, evaluate and report on reasoning models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def main() -> None:
    """Console-script entry: user errors print one line (no traceback) and exit 2."""
    try:
        app()
    except SdlabError as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted: finished work is saved; rerun with --resume to continue")
        sys.exit(130)


@app.callback()
def _root() -> None:
    """sdlab: probe, train (GRPO / self-distillation / SFT), sweep, evaluate and report on reasoning models."""


@app.command()
def version() -> None:
    """Print sdlab's version and the versions of the libraries it drives."""
    from sdlab.rundir import library_versions

    for name, value in library_versions().items():
        print(f"{name}\t{value}")


if __name__ == "__main__":
    main()
