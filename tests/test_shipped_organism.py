"""The default organism ships inside the package: it loads, it is the build the code would make,
and `organism` resolves to it everywhere without building or reaching the hub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sdlab.cli import app
from sdlab.core.io import read_json
from sdlab.evaluation.generation import load_model_and_tokenizer
from sdlab.organism.build import BUILD_FILE, SHIPPED_DIR, settings_hash, shipped_organism_dir, weights_sha256
from sdlab.organism.corpus import DEFAULT_CORPUS, corpus_design
from sdlab.providers import DEFAULT_MODEL, resolve_model


@pytest.fixture(scope="module")
def shipped() -> Path:
    found = shipped_organism_dir()
    assert found is not None, f"no shipped build of the default organism (corpus {DEFAULT_CORPUS}) under {SHIPPED_DIR}"
    return found


def test_the_shipped_build_is_the_one_the_code_builds(shipped: Path) -> None:
    record = read_json(shipped / BUILD_FILE)
    assert record["corpus_version"] == corpus_design(DEFAULT_CORPUS).version
    assert record["settings_hash"] == settings_hash("tiny", 0, DEFAULT_CORPUS)  # the Size, seed and corpus of today's code
    assert record["weights_sha256"] == weights_sha256(shipped)  # the record names these very weights
    assert record["missing_abilities"] == []  # the instrument every user gets is judged healthy
    assert {"cpu", "threads", "precision"} <= record.keys()  # what a rebuild needs to reproduce it
    assert (shipped / "model.safetensors").stat().st_size < 8 * 2**20  # a few MB in the package


def test_the_shipped_files_load_and_answer(shipped: Path) -> None:
    model, tokenizer = load_model_and_tokenizer(shipped)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Solve (4*x + 9) mod 7 = 5 for x in 0..6."}], tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    out = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert tokenizer.decode(out[0, ids.shape[1]:]).startswith("<think>")  # a trained organism, not random weights


def test_organism_resolves_to_the_shipped_build_without_building(shipped: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDLAB_HOME", str(tmp_path / "home"))
    assert Path(resolve_model(DEFAULT_MODEL)) == shipped
    assert Path(resolve_model(DEFAULT_MODEL, seed=0, size="tiny")) == shipped  # what the demo asks for
    assert not (tmp_path / "home").exists()  # nothing was built or cached


def test_eval_of_the_organism_by_name_runs_offline(shipped: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["eval", "--model", "organism", "--data", "organism:linmod-eval:2", "--k", "1", "--max-new-tokens", "8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())
    assert not (tmp_path / "home").exists()


def test_the_build_command_says_whether_it_reproduced_the_shipped_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebuild compares its sha256 with the shipped build's (here a test-size build standing in for it)."""
    import shutil

    import sdlab.organism.build as build

    shipped_dir = tmp_path / "shipped"
    reference = build.build_organism(shipped_dir / f"test-seed0-v{DEFAULT_CORPUS}", size="test", seed=0, show_progress=False, measure=False)
    monkeypatch.setattr(build, "SHIPPED_DIR", shipped_dir)
    result = CliRunner().invoke(app, ["organism", "build", "--size", "test", "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    assert "reproduces the shipped weights" in result.output
    record = read_json(reference / BUILD_FILE)
    (reference / BUILD_FILE).write_text(json.dumps({**record, "weights_sha256": "0" * 64}))
    shutil.rmtree(tmp_path / "again")
    result = CliRunner().invoke(app, ["organism", "build", "--size", "test", "--out", str(tmp_path / "again")])
    assert result.exit_code == 0 and "other weights than the shipped ones" in result.output and record["cpu"] in result.output


def test_a_model_name_with_options_names_another_build_and_bad_options_are_named(shipped: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from sdlab import SdlabError
    from sdlab.config import build_config
    from sdlab.config.checks import check_paths
    from sdlab.config.schema import TrainConfig
    from sdlab.organism.build import default_organism_dir

    monkeypatch.setenv("SDLAB_HOME", str(tmp_path / "home"))
    assert Path(resolve_model("organism:seed=0, size=tiny")) == shipped
    seed1 = default_organism_dir(seed=1)  # a cached build of seed 1, as `sdlab organism build --seed 1` leaves it
    shutil.copytree(shipped, seed1)
    record = read_json(seed1 / BUILD_FILE) | {"seed": 1, "settings_hash": settings_hash("tiny", 1, DEFAULT_CORPUS)}
    (seed1 / BUILD_FILE).write_text(json.dumps(record))
    assert Path(resolve_model("organism:seed=1")) == seed1
    assert Path(resolve_model("organism:seed=1", seed=0)) == seed1  # the name's option wins over a caller's default
    for model, message in [("organism:sed=1", "unknown option 'sed'; organism takes seed, size, corpus"), ("organism:seed", "options are key=value")]:
        config = build_config(TrainConfig, {"method": "grpo", "model": model, "output_dir": str(tmp_path / "run"), "data": {"train": "organism:linmod:4"}})
        with pytest.raises(SdlabError, match=f"model: model '{model}': {message}"):
            check_paths(config)
