"""The `sdlab` command line: one entry point, one module per command group, the only code that
prints (the library logs).

    sdlab --help
"""

from __future__ import annotations

import sys

import typer

from sdlab import SdlabError, __version__
from sdlab.cli import evaluate, experiments, organism, probe, report, train
from sdlab.cli.common import console, setup_logging

app = typer.Typer(
    help="sdlab: probe, train (GRPO / self-distillation / SFT), sweep, evaluate and report on reasoning models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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


def _print_version(value: bool) -> None:
    if value:
        print(f"sdlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages too."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Log warnings and errors only."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print sdlab's version and exit."),
) -> None:
    """sdlab: probe, train (GRPO / self-distillation / SFT), sweep, evaluate and report on reasoning models."""
    setup_logging(verbose=verbose, quiet=quiet)


@app.command()
def version() -> None:
    """Print sdlab's version and the versions of the libraries it drives."""
    from sdlab.core.io import library_versions

    for name, value in library_versions().items():
        print(f"{name}\t{value}")


app.command()(train.train)
app.command()(train.validate)
app.command("sft-data")(train.sft_data)
app.command("eval")(evaluate.eval_command)
app.command()(probe.probe)
app.command()(experiments.sweep)
app.command()(experiments.demo)
app.command()(report.report)
app.add_typer(organism.organism_app, name="organism")
