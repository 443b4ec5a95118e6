"""`sdlab sweep`: grid expansion, matched settings, shipped sweeps, aggregation, and a real
resumable 2-cell sweep on the tiny model."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

from sdlab import SdlabError
from sdlab.config import dump_config
from sdlab.core.io import read_jsonl
from sdlab.experiments.grid import expand_grid, load_sweep, shared_settings, validate_sweep, varied_keys
from sdlab.experiments.results import aggregate, collect_results
from sdlab.experiments.sweep import record_levels, recorded_sweep, run_sweep, with_recorded_levels
from tests.conftest import REPO_ROOT, SHARED_DATA
from tests.test_train import distinct_characters

SHIPPED = sorted((REPO_ROOT / "recipes" / "sweeps").glob("*.yaml"))


def write_sweep(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def grid_sweep(tmp_path, problems_file, **extra) -> dict:
    return {
        "name": "demo",
        "output_dir": str(tmp_path / "sweep"),
        "base": {"method": "grpo", "model": "organism", "steps": 7, "batch": 4, "rollouts": 4, "data": {"train": str(problems_file)},
                 "eval": {"every": 2, "sources": [str(problems_file)], "k": 2}},
        "grid": {
            "method": ["grpo", "sdpo"],
            "coverage": {"small": {"data.train": str(problems_file), "data.limit": 4}, "all": {"data.limit": 8}},
            "seed": [0, 1],
        },
        **extra,
    }


def test_grid_is_the_product_of_the_axes_in_file_order(tmp_path, problems_file):
    config = load_sweep(write_sweep(tmp_path / "s.yaml", grid_sweep(tmp_path, problems_file)))
    cells = expand_grid(config)
    assert len(cells) == 2 * 2 * 2
    assert cells[0].name == "method-grpo__coverage-small__seed-0" and cells[-1].name == "method-sdpo__coverage-all__seed-1"
    assert cells[0].levels == {"method": "grpo", "coverage": "small", "seed": "0"}
    assert cells[0].overrides == {"method": "grpo", "data.train": str(problems_file), "data.limit": 4, "seed": 0}
    recipe = cells[-1].recipe
    assert recipe["method"] == "sdpo" and recipe["seed"] == 1 and recipe["data"] == {"train": str(problems_file), "limit": 8}
    assert recipe["output_dir"] == str(tmp_path / "sweep" / "cells" / cells[-1].name)
    assert len({c.recipe["output_dir"] for c in cells}) == len(cells)


def test_cells_differ_only_in_their_grid_keys(tmp_path, problems_file):
    configs = [config for _, config in validate_sweep(load_sweep(write_sweep(tmp_path / "s.yaml", grid_sweep(tmp_path, problems_file))))]
    assert varied_keys(configs) == {"method", "data.limit", "seed", "output_dir"}
    shared = shared_settings(configs)
    assert (shared["steps"], shared["batch"], shared["rollouts"], shared["eval.k"], shared["eval.every"]) == (7, 4, 4, 2, 2)
    assert shared["data.train"] == str(problems_file)


def test_overrides_go_to_the_sweep_or_to_every_cell(tmp_path, problems_file):
    path = write_sweep(tmp_path / "s.yaml", grid_sweep(tmp_path, problems_file))
    config = load_sweep(path, ["steps=2", "eval.k=3", f"output_dir={tmp_path / 'other'}", "aggregate_over=[seed]"])
    cells = validate_sweep(config)
    assert {c.steps for _, c in cells} == {2} and {c.eval.k for _, c in cells} == {3}
    assert cells[0][1].output_dir.startswith(str(tmp_path / "other"))
    with pytest.raises(SdlabError, match="seed is set by the grid"):
        load_sweep(path, ["seed=3"])
    with pytest.raises(SdlabError, match="not key=value"):
        load_sweep(path, ["steps"])


def test_an_override_replaces_one_axis_even_when_its_name_is_a_dotted_recipe_key(tmp_path, problems_file):
    data = grid_sweep(tmp_path, problems_file)
    data["grid"] = {"eval.k": [2, 3], "seed": [0, 1]}
    path = write_sweep(tmp_path / "s.yaml", data)
    cells = expand_grid(load_sweep(path, ["grid.eval.k=[3]"]))
    assert [c.name for c in cells] == ["eval.k-3__seed-0", "eval.k-3__seed-1"]
    assert {c.recipe["eval"]["k"] for c in cells} == {3}
    with pytest.raises(SdlabError, match="eval.k is set by the grid"):
        load_sweep(path, ["eval.k=4"])


def test_a_list_of_labels_keeps_those_named_levels_and_an_unknown_label_is_named(tmp_path, problems_file):
    data = grid_sweep(tmp_path, problems_file)
    data["grid"]["coverage"]["64"] = {"data.limit": 6}
    path = write_sweep(tmp_path / "s.yaml", data)
    config = load_sweep(path, ["grid.coverage=[64, small]"])  # YAML reads 64 as a number; the file's label is "64"
    assert list(config.grid["coverage"]) == ["64", "small"]
    assert config.grid["coverage"]["small"] == data["grid"]["coverage"]["small"]
    assert {c.levels["coverage"] for c in expand_grid(config)} == {"64", "small"}
    with pytest.raises(SdlabError, match="no level huge on that axis; its levels: small, all, 64"):
        load_sweep(path, ["grid.coverage=[small, huge]"])


def test_sweep_dir_placeholder_and_key_owned_by_two_axes(tmp_path, problems_file):
    data = grid_sweep(tmp_path, problems_file)
    data["base"]["sft"] = {"dataset": "{sweep_dir}/sft_data/traces.jsonl", "collect": {"data": str(problems_file)}}
    cells = expand_grid(load_sweep(write_sweep(tmp_path / "s.yaml", data)))
    assert cells[0].recipe["sft"]["dataset"] == f"{tmp_path / 'sweep'}/sft_data/traces.jsonl"
    data["grid"]["again"] = {"x": {"seed": 5}}
    with pytest.raises(SdlabError, match="'seed' is set by two axes"):
        expand_grid(load_sweep(write_sweep(tmp_path / "s.yaml", data)))


def test_bad_sweep_files_name_the_problem(tmp_path, problems_file):
    data = grid_sweep(tmp_path, problems_file)
    data["grid"]["method"] = ["grpo", "ppo"]
    with pytest.raises(SdlabError, match="(?s)sweep cell method-ppo__coverage-small__seed-0.*method: Input should be"):
        validate_sweep(load_sweep(write_sweep(tmp_path / "s.yaml", data)))
    with pytest.raises(SdlabError, match="grid: .*at least one axis"):
        load_sweep(write_sweep(tmp_path / "s.yaml", {**data, "grid": {}}))
    with pytest.raises(SdlabError, match="gird: unknown key"):
        load_sweep(write_sweep(tmp_path / "s.yaml", {**data, "gird": {}}))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_sweep_expands_and_every_cell_validates(path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # recipe paths are relative to the repository root
    if "_real" in path.stem and not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not found (the shared math data sits beside the repository)")
    config = load_sweep(path)
    cells = validate_sweep(config)
    assert len(cells) >= 4 and "seed" in config.grid and len(config.grid["seed"]) == (1 if config.select else 3)  # a selection sweep: one seed
    configs = [c for _, c in cells]
    grid_keys = {key for cell, _ in cells for key in cell.overrides}
    assert varied_keys(configs) - {"output_dir"} <= grid_keys  # nothing else differs between cells
    assert len({c.output_dir for c in configs}) == len(configs)


def test_a_method_axis_keeps_its_labels_apart(tmp_path):
    """Two arms of one trainer (GRPO at two rates, SDPO with two contexts) are different rows of
    the comparison, never one group."""
    from sdlab.experiments.results import collect_cell

    rows = [collect_cell(tmp_path / label, levels={"method": label, "seed": "0"}, recipe={"method": "grpo"}, status="pending")["row"] for label in ("grpo", "grpo-1e-4")]
    assert [row["method"] for row in rows] == ["grpo", "grpo-1e-4"]
    assert collect_cell(tmp_path / "x", levels={"seed": "0"}, recipe={"method": "sdpo"}, status="pending")["row"]["method"] == "sdpo"  # no such axis: the recipe's
    assert len(aggregate(rows, group_by=["method"], over=["seed"])) == 2


def test_aggregate_gives_mean_and_student_t_interval_over_seeds():
    rows = [
        {"cell": "a0", "method": "grpo", "seed": "0", "status": "done", "id_avg@k": 0.2, "train_accuracy": 0.2, "id_tokens": 0.2, "early_warning_step": 0.2, "id_dataset": "x"},
        {"cell": "a1", "method": "grpo", "seed": "1", "status": "done", "id_avg@k": 0.4, "train_accuracy": 0.4, "id_tokens": 0.4, "early_warning_step": 0.4, "id_dataset": "x"},
        {"cell": "a2", "method": "grpo", "seed": "2", "status": "done", "id_avg@k": 0.6, "train_accuracy": 0.6, "id_tokens": 0.6, "early_warning_step": 0.6, "id_dataset": "x"},
        {"cell": "a3", "method": "grpo", "seed": "3", "status": "partial", "id_avg@k": 0.9, "train_accuracy": 0.9, "id_dataset": "x"},  # stopped midway: left out
        {"cell": "b0", "method": "sdpo", "seed": "0", "status": "partial", "id_avg@k": 0.5, "id_dataset": "x"},
        {"cell": "b1", "method": "sdpo", "seed": "1", "status": "pending", "id_avg@k": None, "id_dataset": "x"},
    ]
    grpo, sdpo = aggregate(rows, group_by=["method"], over=["seed"])
    half = 4.303 * 0.2 / math.sqrt(3)  # t(0.975, 2 df) x sd / sqrt(n)
    assert grpo["id_avg@k_mean"] == pytest.approx(0.4)
    assert 0.4 - half < 0  # the interval stops where the quantity does: a score or a length at 0 ...
    assert (grpo["id_avg@k_ci_low"], grpo["id_avg@k_ci_high"]) == (0.0, pytest.approx(0.4 + half))
    assert (grpo["train_accuracy_ci_low"], grpo["train_accuracy_ci_high"]) == (0.0, pytest.approx(0.4 + half))
    assert (grpo["id_tokens_ci_low"], grpo["id_tokens_ci_high"]) == (0.0, pytest.approx(0.4 + half))
    assert (grpo["early_warning_step_ci_low"], grpo["early_warning_step_ci_high"]) == (pytest.approx(0.4 - half), pytest.approx(0.4 + half))  # ... others nowhere
    assert (grpo["n"], grpo["finished"], grpo["id_dataset"]) == (4, 3, "x")
    assert sdpo["id_avg@k_mean"] == 0.5 and sdpo["id_avg@k_ci_low"] is None and (sdpo["n"], sdpo["finished"]) == (2, 0)
    assert "seed" not in grpo and "cell_mean" not in grpo


def test_console_table_shows_rollout_accuracy_inside_its_range(capsys):
    from sdlab.cli.experiments import print_aggregate

    rows = [{"cell": f"a{s}", "method": "grpo", "seed": str(s), "status": "done", "train_accuracy": v, "train_reward_mean": v} for s, v in enumerate((0.0, 0.1, 0.5))]
    print_aggregate({"name": "t", "axes": ["method", "seed"], "aggregate_over": ["seed"], "aggregate": aggregate(rows, group_by=["method"], over=["seed"])})
    printed = capsys.readouterr().out
    assert "rollout accuracy" in printed and "0.2 [0, 0." in printed and "-" not in printed.split("grpo", 1)[1]


# -- a real sweep on the tiny model ------------------------------------------------------------


def tiny_sweep(tmp_path, tiny_model_dir, problems_file) -> Path:
    recipe = tmp_path / "grpo.yaml"
    recipe.write_text(yaml.safe_dump({"method": "grpo", "output_dir": "unused", "model": str(tiny_model_dir), "steps": 3, "batch": 2, "rollouts": 2,
                                      "max_completion_length": 6, "save_steps": 1, "lr": 1e-2, "data": {"train": str(problems_file)},
                                      "eval": {"every": 1, "sources": [str(problems_file)], "limit": 2, "k": 2, "max_new_tokens": 4}}))
    return write_sweep(tmp_path / "tiny.yaml", {
        "name": "tiny",
        "output_dir": str(tmp_path / "sweep"),
        "recipe": str(recipe),
        "base": {"steps": 2},
        "grid": {"seed": [0, 1]},
        "aggregate_over": ["seed"],
    })


def test_a_sweep_run_in_parts_into_one_directory_collects_every_part(tmp_path, tiny_model_dir, problems_file):
    path = tiny_sweep(tmp_path, tiny_model_dir, problems_file)
    run_sweep(load_sweep(path, ["grid.seed=[1]"]), reward_funcs=distinct_characters)
    results = run_sweep(load_sweep(path, ["grid.seed=[0]"]), reward_funcs=distinct_characters)
    assert [(r["cell"], r["status"]) for r in results["rows"]] == [("seed-1", "done"), ("seed-0", "done")]
    assert [line.split(",")[0] for line in (tmp_path / "sweep" / "results.csv").read_text().splitlines()[1:]] == ["seed-1", "seed-0"]
    assert results["aggregate"][0]["n"] == 2
    # a part started at the same moment as another: the other's sweep.yaml is written while this
    # one runs, and this part's levels are recorded again before its results are collected
    recorded_file = tmp_path / "sweep" / "sweep.yaml"

    def other_part_writes_last(index, total, cell, status):
        write_sweep(recorded_file, {**yaml.safe_load(recorded_file.read_text()), "grid": {"seed": [0]}})

    results = run_sweep(load_sweep(path, ["grid.seed=[1]"]), reward_funcs=distinct_characters, on_cell=other_part_writes_last)
    assert sorted(r["cell"] for r in results["rows"]) == ["seed-0", "seed-1"]
    # another setting is another sweep: the directory then records what it was given
    run_sweep(load_sweep(path, ["grid.seed=[1]", "name=other"]), reward_funcs=distinct_characters)
    assert [r["cell"] for r in collect_results(tmp_path / "sweep")["rows"]] == ["seed-1"]


def test_tiny_sweep_runs_skips_finished_cells_and_resumes_an_interrupted_one(tmp_path, tiny_model_dir, problems_file):
    path = tiny_sweep(tmp_path, tiny_model_dir, problems_file)
    seen: list[tuple[str, str]] = []
    results = run_sweep(load_sweep(path), reward_funcs=distinct_characters, on_cell=lambda i, n, cell, status: seen.append((cell.name, status)))
    assert seen == [("seed-0", "start"), ("seed-1", "start")]
    sweep_dir = tmp_path / "sweep"
    rows = [row for row in results["rows"]]
    assert [(r["cell"], r["status"], r["steps"]) for r in rows] == [("seed-0", "done", 2), ("seed-1", "done", 2)]
    assert rows[0]["id_dataset"] == "problems" and rows[0]["id_avg@k"] == 0.0 and rows[0]["base_id_avg@k"] == 0.0
    assert rows[0]["train_reward_mean"] > 0 and rows[0]["distinct_train_problems"] == 8
    assert [p["step"] for p in results["cells"][0]["curve"]] == [0, 1, 2]
    assert {"step0_id_avg@k", "step2_id_avg@k", "step2_ood_avg@k"} <= set(rows[0]) and "step2_id_avg@k_mean" in results["aggregate"][0]
    rewards = [r["reward_mean"] for r in results["cells"][0]["training"] if "reward_mean" in r]
    assert (rows[0]["step1_train_reward"], rows[0]["step2_train_reward"]) == tuple(rewards) and "step0_train_reward" not in rows[0]
    assert results["shared"]["batch"] == 2 and results["aggregate"][0]["n"] == 2
    assert results["aggregate"][0]["train_reward_mean_mean"] == pytest.approx((rows[0]["train_reward_mean"] + rows[1]["train_reward_mean"]) / 2)
    for name in ("results.csv", "results_steps.csv", "aggregate.csv", "results.json"):
        assert (sweep_dir / name).is_file()
    assert (sweep_dir / "results.csv").read_text().splitlines()[0].startswith("cell,seed,status,method")

    # finished cells are skipped; a cell interrupted after its first checkpoint resumes from it
    cell = sweep_dir / "cells" / "seed-1"
    first_summary = (sweep_dir / "cells" / "seed-0" / "summary.json").read_text()
    for done_later in ("summary.json", "model", "checkpoint-2"):  # what a crash during step 2 had not written yet
        shutil.rmtree(cell / done_later) if (cell / done_later).is_dir() else (cell / done_later).unlink()
    seen.clear()
    results = run_sweep(load_sweep(path), reward_funcs=distinct_characters, on_cell=lambda i, n, c, status: seen.append((c.name, status)))
    assert seen == [("seed-0", "done"), ("seed-1", "resume")]
    assert (sweep_dir / "cells" / "seed-0" / "summary.json").read_text() == first_summary
    assert json.loads((cell / "summary.json").read_text())["resumed_from"] == "checkpoint-1"
    assert [r["status"] for r in results["rows"]] == ["done", "done"]

    # a changed recipe is refused rather than silently mixed with the finished cells
    with pytest.raises(SdlabError, match="cell seed-0 was started with a different recipe"):
        run_sweep(load_sweep(path, ["lr=0.5"]), reward_funcs=distinct_characters)

    # the sweep directory alone is enough to collect the results (the recipe was merged into sweep.yaml)
    (tmp_path / "grpo.yaml").unlink()
    assert [r["steps"] for r in collect_results(sweep_dir)["rows"]] == [2, 2]


def test_a_cell_whose_recipe_finished_in_another_sweep_is_copied_not_trained(tmp_path, tiny_model_dir, problems_file):
    path = tiny_sweep(tmp_path, tiny_model_dir, problems_file)
    final = {"k": 2, "limit": 2, "max_new_tokens": 4}
    first = run_sweep(load_sweep(path, [f"final_eval={json.dumps(final)}"]), reward_funcs=distinct_characters)
    original = tmp_path / "sweep" / "cells" / "seed-0"
    # a second sweep: seed 0 with the same recipe and final evaluation, seed 2 new, seed 1 with another rate
    other = load_sweep(path, [f"output_dir={tmp_path / 'other'}", "grid.seed=[0, 2]", f"reuse=[{tmp_path / 'sweep'}]", f"final_eval={json.dumps(final)}"])
    seen: list[tuple[str, str]] = []
    results = run_sweep(other, reward_funcs=distinct_characters, on_cell=lambda i, n, cell, status: seen.append((cell.name, status)))
    assert seen == [("seed-0", "reused"), ("seed-2", "start")]
    reused = tmp_path / "other" / "cells" / "seed-0"
    assert (reused / "reused_from.txt").read_text().strip() == str(original.resolve())
    assert (reused / "metrics.jsonl").read_text() == (original / "metrics.jsonl").read_text()
    assert (reused / "final_eval" / "metrics.json").read_text() == (original / "final_eval" / "metrics.json").read_text()
    assert yaml.safe_load((reused / "config.yaml").read_text())["output_dir"] == str(reused)
    assert not list(reused.glob("checkpoint-*")) and (reused / "model").is_dir()
    assert not (tmp_path / "other" / "cells" / "seed-2" / "reused_from.txt").exists()
    rows = {r["cell"]: r for r in results["rows"]}
    assert rows["seed-0"]["train_reward_mean"] == first["rows"][0]["train_reward_mean"] and rows["seed-2"]["status"] == "done"
    # a rerun finds the copy done and its config its own; another rate reuses nothing
    seen.clear()
    run_sweep(other, reward_funcs=distinct_characters, on_cell=lambda i, n, cell, status: seen.append((cell.name, status)))
    assert seen == [("seed-0", "done"), ("seed-2", "done")]
    run_sweep(load_sweep(path, [f"output_dir={tmp_path / 'third'}", "grid.seed=[0]", "lr=0.02", f"reuse=[{tmp_path / 'sweep'}]"]), reward_funcs=distinct_characters)
    assert not (tmp_path / "third" / "cells" / "seed-0" / "reused_from.txt").exists()


def test_cells_share_the_step0_evaluation_and_training_is_the_same_without_it(tmp_path, tiny_model_dir, problems_file):
    from sdlab.training.run import run_training

    path = tiny_sweep(tmp_path, tiny_model_dir, problems_file)
    results = run_sweep(load_sweep(path, ["grid={lr: [0.01, 0.02]}"]), reward_funcs=distinct_characters)
    cells = [tmp_path / "sweep" / "cells" / name for name in ("lr-0.01", "lr-0.02")]
    assert len(list((tmp_path / "sweep" / "start_eval").glob("*.jsonl"))) == 1  # one model, one seed: one evaluation
    step0 = [[row for row in read_jsonl(cell / "eval.jsonl") if row["step"] == 0] for cell in cells]
    assert step0[0] == step0[1] and step0[0]
    # the second cell read its step 0 from the cache; run alone it computes the same, and trains the same
    alone = run_training(validate_sweep(load_sweep(path, ["grid={lr: [0.02]}", f"output_dir={tmp_path / 'alone'}"]))[0][1], reward_funcs=distinct_characters)
    assert [row for row in read_jsonl(tmp_path / "alone" / "cells" / "lr-0.02" / "eval.jsonl") if row["step"] == 0] == step0[1]
    assert [r["loss"] for r in read_jsonl(tmp_path / "alone" / "cells" / "lr-0.02" / "metrics.jsonl") if "loss" in r] == [r["loss"] for r in read_jsonl(cells[1] / "metrics.jsonl") if "loss" in r]
    assert alone["steps"] == results["rows"][1]["steps"]


def test_parts_that_differ_only_in_what_they_reuse_record_the_union_of_their_levels(tmp_path, problems_file):
    path = write_sweep(tmp_path / "s.yaml", grid_sweep(tmp_path, problems_file))
    recorded = tmp_path / "sweep.yaml"
    recorded.write_text(dump_config(load_sweep(path, ["grid.seed=[0]"])))
    part = load_sweep(path, ["grid.seed=[1]", f"reuse=[{tmp_path / 'elsewhere'}]"])
    assert with_recorded_levels(part, recorded).grid["seed"] == [0, 1]
    assert with_recorded_levels(load_sweep(path, ["grid.seed=[1]", "steps=3"]), recorded).grid["seed"] == [1]  # other settings: another sweep


def test_problems_drawn_follows_trls_sampler_epoch_by_epoch():
    from sdlab.training.grpo import problems_drawn

    ids = [f"p{i}" for i in range(64)]
    assert len(problems_drawn(ids, prompts_per_step=2, steps=31, seed=0)) == 62  # fewer draws than problems
    assert set(problems_drawn(ids, prompts_per_step=2, steps=32, seed=0).values()) == {1}  # one epoch: each once
    assert sum(problems_drawn(ids, prompts_per_step=16, steps=12, seed=3).values()) == 192 and len(problems_drawn(ids, prompts_per_step=16, steps=12, seed=3)) == 64
    one = problems_drawn(["p0"] * 64, prompts_per_step=8, steps=10, seed=0)  # organism:linmod:1x64: one problem
    assert one == {"p0": 80}
    odd = [f"p{i}" for i in range(7)]  # 7 rows, batches of 2: each epoch drops one problem
    assert len(problems_drawn(odd, prompts_per_step=2, steps=3, seed=0)) == 6
    with pytest.raises(ValueError, match="cannot fill one batch"):
        problems_drawn(odd, prompts_per_step=8, steps=1, seed=0)


def test_a_coverage_sweep_refuses_levels_its_steps_do_not_cover(tmp_path, problems_file):
    data = grid_sweep(tmp_path, problems_file, require_full_coverage=True)
    data["base"].update(steps=1, batch=2)  # 2 prompts: the 8-problem level is not covered, the 2-problem one is
    with pytest.raises(SdlabError, match="cell method-grpo__coverage-all__seed-0: 1 steps x 2 prompts .* draw 2 of its 8 distinct"):
        validate_sweep(load_sweep(write_sweep(tmp_path / "s.yaml", data)))
    data["base"]["steps"] = 4  # 8 prompts over one epoch of 8 rows: all covered
    assert len(validate_sweep(load_sweep(write_sweep(tmp_path / "s.yaml", data)))) == 8


def test_training_reward_is_averaged_over_the_steps_since_the_previous_evaluation():
    from sdlab.experiments.results import reward_by_window

    training = [{"step": s, "reward_mean": r} for s, r in [(1, 0.0), (2, 1.0), (3, 0.5), (4, 0.25), (5, 1.0)]] + [{"step": 5, "eval": 1}]
    assert reward_by_window(training, [0, 2, 4]) == {2: 0.5, 4: 0.375}  # step 5 lies after the last evaluation
    assert reward_by_window(training, [0]) == {} and reward_by_window([], [0, 2]) == {}


def test_last_third_mean_and_the_rate_rule():
    from sdlab.experiments.results import choose_level, last_third_mean

    assert last_third_mean([0.0] * 20 + [0.5] * 5 + [1.0] * 5) == pytest.approx(0.75)  # 30 steps: steps 21-30
    assert last_third_mean([1.0, 0.0, 0.0, 0.2]) == pytest.approx(0.1)  # 4 steps: the last ceil(4/3) = 2
    assert last_third_mean([0.4, None, 0.6, None]) == pytest.approx(0.6) and last_third_mean([]) is None
    assert choose_level({1e-5: 0.2, 1e-4: 0.6, 1e-3: 0.1}) == 1e-4
    assert choose_level({1e-3: 0.6, 1e-5: 0.6, 1e-4: 0.3}) == 1e-5  # a tie goes to the smaller rate
    assert choose_level({1e-5: None, 1e-4: 0.0}) == 1e-4 and choose_level({1e-5: None}) is None


def test_a_rate_is_chosen_only_from_finished_cells_and_once_all_have_finished():
    from sdlab.experiments.results import select_levels

    rows = [
        {"method": "sdpo", "lr": 1e-5, "status": "done", "score": 0.28},
        {"method": "sdpo", "lr": 1e-4, "status": "done", "score": 0.11},
        {"method": "grpo", "lr": 1e-5, "status": "pending"},
        {"method": "grpo", "lr": 1e-4, "status": "partial", "score": 0.75},  # steps so far: not the rule's score
    ]
    sdpo, grpo = select_levels(rows, axis="lr", per=["method"], metric="score")
    assert sdpo["lr"] == 1e-5 and sdpo["finished"] == "2/2"
    assert grpo["lr"] is None and grpo["finished"] == "0/2" and grpo["scores"] == {1e-5: None, 1e-4: None}


def test_a_selection_must_name_grid_axes(tmp_path, problems_file):
    data = grid_sweep(tmp_path, problems_file, select={"axis": "lr", "per": ["method"]})
    with pytest.raises(SdlabError, match="select: 'lr' is not a grid axis"):
        load_sweep(write_sweep(tmp_path / "s.yaml", data))


def test_a_rate_sweep_chooses_by_its_fixed_rule(tmp_path, tiny_model_dir, problems_file):
    from sdlab.core.io import read_jsonl
    from sdlab.experiments.results import choose_level, last_third_mean

    path = tiny_sweep(tmp_path, tiny_model_dir, problems_file)
    data = yaml.safe_load(path.read_text())
    data.update(grid={"method": ["grpo"], "lr": [1e-3, 1e-1], "seed": [0]}, select={"axis": "lr", "per": ["method"]})
    data["base"].update({"steps": 3, "warmup_steps": 0, "eval.every": 0})
    results = run_sweep(load_sweep(write_sweep(path, data)), reward_funcs=distinct_characters)
    by_rate = {float(r["lr"]): last_third_mean([m["reward_mean"] for m in read_jsonl(tmp_path / "sweep" / "cells" / r["cell"] / "metrics.jsonl")]) for r in results["rows"]}
    assert all(score is not None for score in by_rate.values())
    [choice] = results["selection"]
    assert choice["method"] == "grpo" and choice["scores"] == by_rate and choice["lr"] == choose_level(by_rate)


def test_remedies_run_in_screening_parts_keep_their_rule_and_record_every_level(tmp_path):
    """The remedies protocol: every level on seed 0, then the chosen ones on seeds 1 and 2. A
    part that keeps some levels of the remedy axis still validates (the rule names levels of the
    file), and the sweep records the union of the parts."""
    path = REPO_ROOT / "recipes" / "sweeps" / "remedies.yaml"
    screen = load_sweep(path, ["grid.seed=[0]"])
    chosen = load_sweep(path, ["grid.remedy=[grpo, sdpo, marker-0, agreeing]", "grid.seed=[1, 2]"])
    assert list(chosen.grid["remedy"]) == ["grpo", "sdpo", "marker-0", "agreeing"] and chosen.remedies == screen.remedies
    assert chosen.remedies.screen_seeds == [0] and "marker-0.5" in chosen.remedies.knobs["marker"]
    recorded = tmp_path / "sweep.yaml"
    recorded.write_text(dump_config(screen))
    union = with_recorded_levels(chosen, recorded)
    assert list(union.grid["remedy"]) == list(screen.grid["remedy"]) and union.grid["seed"] == [0, 1, 2]
    with pytest.raises(SdlabError, match="has no level marker-7"):
        load_sweep(path, ["grid.remedy=[grpo, marker-7]"])


def test_a_remedies_part_run_first_records_a_sweep_its_results_can_read(tmp_path):
    """A part without the controls or some knobs (the second build's chosen levels, or one lane of
    the screen) may be the first to write the directory: what it records must still validate, so
    it keeps every level of the remedy axis, the ones it does not run left pending."""
    path = REPO_ROOT / "recipes" / "sweeps" / "remedies.yaml"
    part = load_sweep(path, ["grid.remedy=[lambda-0.5, agreeing]", "grid.seed=[1]", f"output_dir={tmp_path}"])
    assert [cell.levels["remedy"] for cell in expand_grid(part)] == ["lambda-0.5", "agreeing"]
    record_levels(recorded_sweep(part), tmp_path)
    results = collect_results(tmp_path)
    file_levels = list(load_sweep(path).grid["remedy"])
    assert [cell["levels"]["remedy"] for cell in results["cells"]] == file_levels
    assert {cell["levels"]["seed"] for cell in results["cells"]} == {"1"} and {row["status"] for row in results["rows"]} == {"pending"}


SECOND_BUILD_KNOBS = "remedies.knobs={marker: [marker-0.5], clip: [clip-0.05], blend: [lambda-0.75], schedule: [nothink-to-full-30], agreeing: [agreeing]}"


def test_the_second_build_records_only_the_levels_chosen_on_the_first(tmp_path):
    """The second build runs the levels chosen on the shipped build and names only them as knobs,
    so its rule has one level per remedy to choose, and no unrun level waits as pending."""
    path = REPO_ROOT / "recipes" / "sweeps" / "remedies.yaml"
    chosen = ["grpo", "sdpo", "marker-0.5", "clip-0.05", "lambda-0.75", "nothink-to-full-30", "agreeing"]
    part = load_sweep(path, [f"grid.remedy=[{', '.join(chosen)}]", "grid.seed=[2]", SECOND_BUILD_KNOBS, f"output_dir={tmp_path}"])
    assert all(len(levels) == 1 for levels in part.remedies.knobs.values())
    record_levels(recorded_sweep(part), tmp_path)
    results = collect_results(tmp_path)
    assert [cell["levels"]["remedy"] for cell in results["cells"]] == chosen
    whole_file = load_sweep(path, [f"grid.remedy=[{', '.join(chosen)}]", "grid.seed=[2]"])
    assert "marker-0" in whole_file.recorded_grid()["remedy"]  # without the override the file's every level is named
