"""`sdlab train` / `sdlab validate`: recipes fail fast with clear errors; tiny runs write a full run dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sdlab import SdlabError
from sdlab.train import batch_layout, sft_max_steps, truncate_step_logs
from sdlab.train_config import load_train_config


def write_recipe(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def problems_file(tmp_path) -> Path:
    """Eight one-digit sums in the JSONL problem format."""
    path = tmp_path / "problems.jsonl"
    rows = [{"id": f"p{i}", "question": f"What is {i} + {i}? Put the answer in \\boxed{{}}.", "answer": str(2 * i)} for i in range(8)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def recipe(tmp_path, problems_file) -> Path:
    return write_recipe(tmp_path / "grpo.yaml", {"method": "grpo", "model": "organism", "output_dir": str(tmp_path / "run"), "data": {"train": str(problems_file)}})


def error_of(recipe_path, overrides) -> str:
    with pytest.raises(SdlabError) as err:
        load_train_config(recipe_path, overrides)
    return str(err.value)


def test_unknown_key_names_its_full_path(recipe):
    assert "sdpo.alhpa: unknown key" in error_of(recipe, ["sdpo.alhpa=0.5"])


def test_wrong_type_names_the_key(recipe):
    message = error_of(recipe, ["steps=ten"])
    assert "steps:" in message and "integer" in message


def test_unknown_method_and_context_list_the_allowed_values(recipe):
    assert "method: Input should be 'grpo', 'sdpo' or 'sft'" in error_of(recipe, ["method=ppo"])
    message = error_of(recipe, ["method=sdpo", "sdpo.context=hint"])
    assert "sdpo.context" in message and "'solution', 'solution_nothink', 'regenerated' or 'feedback'" in message


def test_missing_data_file_and_model_dir_fail_before_any_work(recipe, tmp_path):
    assert "data.train: 'nowhere.parquet' not found" in error_of(recipe, ["data.train=nowhere.parquet"])
    assert "model: './no-such-model' not found" in error_of(recipe, ["model=./no-such-model"])
    assert "sft.dataset" in error_of(recipe, ["method=sft", f"sft.dataset={tmp_path}/traces.jsonl"])


def test_inconsistent_sections_are_rejected(recipe):
    assert "sft:" in error_of(recipe, ["method=sft"])
    assert "mini_batch" in error_of(recipe, ["batch=8", "mini_batch=3"])
    assert "alpha=1.0" in error_of(recipe, ["method=sdpo", "sdpo.distillation=sampled", "sdpo.alpha=0.5"])
    assert "eval.sources" in error_of(recipe, ["eval.every=5"])


def test_hub_ids_and_organism_specs_pass_offline(recipe):
    config = load_train_config(recipe, ["model=Qwen/Qwen3-8B", "data.train=organism:add:64"])
    assert config.model == "Qwen/Qwen3-8B"


def test_study_step_accounting(recipe):
    config = load_train_config(recipe, ["steps=100", "batch=256", "mini_batch=128", "rollouts=8"])
    assert (config.updates_per_step, config.optimizer_steps) == (2, 200)
    assert batch_layout(completions_per_update=128 * 8, micro_batch=2, processes=8) == (2, 64)
    assert batch_layout(completions_per_update=16, micro_batch=None, processes=1) == (16, 1)
    with pytest.raises(SdlabError, match="micro_batch=3"):
        batch_layout(completions_per_update=16, micro_batch=3, processes=1)


def test_sft_stops_at_steps_or_epochs_whichever_first():
    assert sft_max_steps(steps=100, epochs=1.0, examples=40, batch=8) == 5
    assert sft_max_steps(steps=3, epochs=2.0, examples=40, batch=8) == 3


def test_resume_drops_rows_logged_after_the_checkpoint(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3, 4)))
    truncate_step_logs(tmp_path, after_step=2)
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]
