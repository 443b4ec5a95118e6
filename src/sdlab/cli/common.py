"""What every command shares: the stderr console, progress-bar columns, the logging set-up and
the fixed choices shown as enums in `--help`."""

from __future__ import annotations

import logging
from enum import Enum

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

console = Console(stderr=True)  # progress, errors, the demo's stage lines
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class Backend(str, Enum):
    """Generation engine: vLLM when installed and a GPU is present (auto), or one named."""

    auto = "auto"
    transformers = "transformers"
    vllm = "vllm"


class SftMode(str, Enum):
    """D_ug (no context) or D_sg (the solution in context, dropped for training)."""

    unguided = "unguided"
    guided = "guided"


def progress_columns(unit: str) -> tuple:
    return (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit), TimeElapsedColumn())


def stdout_console() -> Console:
    """Where tables go (stdout, so they can be redirected), created when printing so that it
    writes to the stdout of the moment."""
    return Console()


def quiet_library_logs() -> None:
    """sdlab's INFO messages off unless --verbose asked for DEBUG (for commands whose own lines
    are the progress)."""
    logger = logging.getLogger("sdlab")
    if logger.level > logging.DEBUG:
        logger.setLevel(logging.WARNING)


def setup_logging(*, verbose: bool, quiet: bool) -> None:
    """One set-up for every command: sdlab's own INFO messages by default (DEBUG with
    --verbose), warnings only with --quiet; other libraries speak from WARNING up."""
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT, force=True)
    logging.getLogger("sdlab").setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
