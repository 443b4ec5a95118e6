"""The command line's conventions: --version, one logging set-up with -v/--quiet, fixed choices
as enums and the schema's defaults in --help."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sdlab import __version__
from sdlab.cli import app
from sdlab.config.schema import EvalConfig

REPO = Path(__file__).resolve().parents[1]


def test_version_option():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"sdlab {__version__}"


@pytest.mark.parametrize(("flags", "level"), [([], logging.INFO), (["-v"], logging.DEBUG), (["--verbose"], logging.DEBUG), (["-q"], logging.WARNING), (["--quiet"], logging.WARNING)])
def test_one_logging_set_up_for_every_command(flags, level, monkeypatch):
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(app, [*flags, "validate", "recipes/organism/grpo.yaml"])
    assert result.exit_code == 0, result.output
    assert logging.getLogger("sdlab").level == level


def test_help_shows_fixed_choices_and_the_schemas_defaults():
    help_text = CliRunner().invoke(app, ["eval", "--help"], env={"COLUMNS": "200"}).output
    assert "auto|transformers|vllm" in help_text
    assert f"[default: {EvalConfig.model_fields['max_new_tokens'].default}]" in help_text
    assert "unguided|guided" in CliRunner().invoke(app, ["sft-data", "--help"], env={"COLUMNS": "200"}).output


def test_probe_refuses_greedy_sampling():
    from sdlab import SdlabError
    from sdlab.config import build_config
    from sdlab.config.schema import ProbeConfig

    with pytest.raises(SdlabError, match="temperature must be above 0"):
        build_config(ProbeConfig, {"model": "m", "data": "d", "out": "o", "temperature": 0})
