"""Every shipped training recipe loads through TrainConfig, and its data paths resolve from the repo root."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from sdlab import SdlabError
from sdlab.config.checks import check_paths, load_train_config
from sdlab.config.schema import TrainConfig
from tests.conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
# Training recipes; recipes/sweeps and recipes/accelerate hold other schemas.
TRAIN_RECIPES = sorted([*(REPO / "recipes" / "organism").glob("*.yaml"), *(REPO / "recipes" / "models").rglob("*.yaml")])
ACCELERATE_CONFIGS = sorted((REPO / "recipes" / "accelerate").glob("*.yaml"))


def data_available(recipe: Path) -> bool:
    """Model recipes read ../shared/data/math, which sits beside the repository, not in it."""
    return "models" not in recipe.relative_to(REPO / "recipes").parts or SHARED_DATA.is_dir()


def test_the_expected_recipes_are_shipped():
    names = {str(p.relative_to(REPO / "recipes")) for p in TRAIN_RECIPES}
    for method in ("grpo", "sdpo_solution", "sdpo_solution_nothink", "sdpo_regenerated", "sdpo_ema", "sft_unguided", "sft_guided",
                   *(f"sdpo_remedy_{name}" for name in ("marker", "clip", "blend", "schedule", "agreeing"))):
        assert f"organism/{method}.yaml" in names
    for model in ("qwen3-8b", "deepseek-r1-distill-qwen-7b", "olmo3-7b-instruct"):
        assert {f"models/{model}/grpo.yaml", f"models/{model}/sdpo.yaml"} <= names
    assert {p.name for p in ACCELERATE_CONFIGS} == {"zero3.yaml", "fsdp.yaml"}


@pytest.mark.parametrize("recipe", TRAIN_RECIPES, ids=lambda p: str(p.relative_to(REPO / "recipes")))
def test_recipe_validates_from_the_repo_root(recipe, monkeypatch):
    if not data_available(recipe):
        pytest.skip(f"{SHARED_DATA} not found (the shared math data sits beside the repository)")
    monkeypatch.chdir(REPO)
    config = load_train_config(recipe)
    check_paths(config)
    assert config.output_dir.startswith("runs/")


STUDY_OPTIMISER = {
    "lr_scheduler": "constant_with_warmup", "warmup_steps": 10, "weight_decay": 0.01, "scale_rewards": "none",
    "epsilon_low": 0.2, "epsilon_high": 0.28, "loss_type": "grpo", "importance_sampling_cap": 2.0,
}


@pytest.mark.parametrize("recipe", sorted((REPO / "recipes" / "models").rglob("*.yaml")), ids=lambda p: p.parent.name + "/" + p.name)
def test_model_recipes_carry_the_studys_settings(recipe):
    config = TrainConfig.model_validate(yaml.safe_load(recipe.read_text()))
    assert (config.batch, config.mini_batch, config.rollouts, config.max_completion_length) == (256, 128, 8, 20480)
    assert config.updates_per_step == 2 and config.runtime.bf16 and config.runtime.vllm.enabled
    written = yaml.safe_load(recipe.read_text())  # written out, not left to sdlab's defaults
    assert {key: written[key] for key in STUDY_OPTIMISER} == STUDY_OPTIMISER
    if config.method == "grpo":
        assert config.lr == 1e-6
    else:
        sd = config.sdpo
        assert (config.lr, sd.alpha, sd.topk, sd.tail, sd.success_threshold) == (1e-5, 0.5, 100, True, 0.5)
        assert sd.max_teacher_prompt_length == 22528 and sd.distillation == "topk" and sd.context == "solution"


@pytest.mark.parametrize("recipe", sorted((REPO / "recipes" / "organism").glob("*.yaml")), ids=lambda p: p.name)
def test_organism_recipes_use_the_cpu_settings(recipe):
    config = TrainConfig.model_validate(yaml.safe_load(recipe.read_text()))
    runtime = config.runtime
    assert runtime.use_cpu and not runtime.bf16 and not runtime.gradient_checkpointing and runtime.dataloader_num_workers == 0
    assert config.logging.report_to == "none" and config.model == "organism"


@pytest.mark.parametrize("config_file", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_configs_parse(config_file):
    data = yaml.safe_load(config_file.read_text())
    assert data["distributed_type"] in {"DEEPSPEED", "FSDP"} and data["mixed_precision"] == "bf16"


def test_sdlab_validate_checks_every_shipped_recipe(monkeypatch):
    from typer.testing import CliRunner

    from sdlab.cli import app

    monkeypatch.chdir(REPO)
    for recipe in filter(data_available, TRAIN_RECIPES):  # the organism recipes always
        result = CliRunner().invoke(app, ["validate", str(recipe.relative_to(REPO))])
        assert result.exit_code == 0, (recipe, result.output)
        assert ": ok (" in result.output


def test_sdlab_validate_reports_a_bad_override_on_one_line_with_exit_2():
    import subprocess

    sdlab = Path(sys.executable).with_name("sdlab")
    result = subprocess.run([str(sdlab), "validate", "recipes/organism/grpo.yaml", "method=ppo"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "method: Input should be 'grpo', 'sdpo' or 'sft'" in result.stderr and "Traceback" not in result.stderr


def test_longest_sequence_counts_the_teacher_prompt_for_sdpo_only():
    data = {"train": "organism:linmod:8"}
    sdpo = TrainConfig(method="sdpo", output_dir="runs/x", data=data, max_prompt_length=100, max_completion_length=50, sdpo={"max_teacher_prompt_length": 400})
    grpo = TrainConfig(method="grpo", output_dir="runs/x", data=data, max_prompt_length=100, max_completion_length=50, eval={"every": 5, "sources": ["organism:linmod-eval:4"], "max_new_tokens": 300})
    assert sdpo.longest_sequence == 450
    assert grpo.longest_sequence == 400  # the periodic evaluation's answers are longer than the rollouts


@pytest.mark.parametrize("recipe", sorted((REPO / "recipes" / "organism").glob("*.yaml")), ids=lambda p: p.name)
def test_organism_recipes_fit_the_organisms_pretraining_window(recipe):
    """v6 pretrained on 256-token windows while the SDPO teacher saw up to ~700 tokens: most of its
    scored tokens lay at distances the organism had never seen (docs/organism.md#window)."""
    from dataclasses import asdict

    from sdlab.organism.build import SIZES, trained_window

    config = TrainConfig.model_validate(yaml.safe_load(recipe.read_text()))
    assert config.longest_sequence <= min(trained_window(asdict(SIZES["tiny"])), trained_window(asdict(SIZES["small"])))


def test_training_warns_when_a_sequence_outgrows_the_organisms_window(tmp_path, caplog):
    import json
    import logging

    from sdlab.training.run import check_window

    (tmp_path / "build.json").write_text(json.dumps({"settings": {"seq_len": 256}}))
    config = load_train_config(REPO / "recipes" / "organism" / "sdpo_solution.yaml")
    with caplog.at_level(logging.WARNING, logger="sdlab.training.run"):
        check_window(config, str(tmp_path))
    assert f"sequences of up to {config.longest_sequence} tokens" in caplog.text and "256-token windows" in caplog.text
    caplog.clear()
    extended = {"seq_len": 256, "extend_steps": 300, "extend_seq_len": config.longest_sequence}  # the v7 build's extension phase
    (tmp_path / "build.json").write_text(json.dumps({"settings": extended}))
    check_window(config, str(tmp_path))
    assert caplog.text == ""


MODEL_RECIPES = sorted((REPO / "recipes" / "models").rglob("*.yaml"))


@pytest.mark.parametrize("recipe", MODEL_RECIPES, ids=lambda p: p.parent.name + "/" + p.name)
def test_model_recipes_find_the_studys_data_through_data_dir_from_anywhere(recipe, tmp_path, monkeypatch):
    """The documented route to the study's data: `data_dir=<where the data is>`, from any directory."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not found (the shared math data sits beside the repository)")
    from sdlab.core.data import load_problems

    monkeypatch.chdir(tmp_path)
    config = load_train_config(recipe, [f"data_dir={SHARED_DATA.parent}"])
    assert Path(config.data.train).is_relative_to(SHARED_DATA) and all(Path(s).is_file() for s in config.eval.sources)
    problems = load_problems(config.data.train, limit=2)
    assert len(problems) == 2 and all(p.answer for p in problems)
    with pytest.raises(SdlabError, match=r"data.train: '.*/nowhere/math/coverage/seen_512.parquet' not found"):
        load_train_config(recipe, [f"data_dir={tmp_path / 'nowhere'}"])


def test_a_data_dir_placeholder_without_data_dir_names_the_setting(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"method": "grpo", "output_dir": str(tmp_path / "run"), "data": {"train": "{data_dir}/x.parquet"}}))
    with pytest.raises(SdlabError, match=r"uses \{data_dir\} but data_dir is not set"):
        load_train_config(recipe)
