"""`sdlab organism data`: exported problems load back through the shared JSONL loader."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from sdlab.cli import app
from sdlab.core.data import load_problems
from sdlab.organism.problems import load_organism_problems


def test_organism_data_exports_loadable_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "linmod.jsonl"
    result = CliRunner().invoke(app, ["organism", "data", "linmod", "--n", "3x2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    loaded = load_problems(out)
    expected = load_organism_problems("organism:linmod:3x2")
    assert [(p.question, p.answer) for p in loaded] == [(p.question, p.answer) for p in expected]
    assert all(p.solution and "<think>" in p.solution for p in loaded)


def test_organism_data_rejects_an_unknown_family(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["organism", "data", "nope", "--n", "3", "--out", str(tmp_path / "x.jsonl")])
    assert result.exit_code != 0 and "unknown organism family" in str(result.exception)


def test_the_organism_sizes_offered_are_the_ones_built():
    from sdlab.cli.organism import OrganismSize
    from sdlab.organism.build import SIZES

    assert sorted(size.value for size in OrganismSize) == sorted(SIZES)



def test_the_build_commands_defaults_are_the_builds():
    """`sdlab organism build` without options must rebuild the shipped organism's settings."""
    import inspect

    from sdlab.cli.organism import organism_build
    from sdlab.organism import build

    options = {name: parameter.default.default for name, parameter in inspect.signature(organism_build).parameters.items()}
    assert options["threads"] == build.BUILD_THREADS and options["corpus"] == build.DEFAULT_CORPUS
    assert options["size"].value == "tiny" and options["seed"] == 0
