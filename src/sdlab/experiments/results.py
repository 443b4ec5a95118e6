"""A sweep's results as tables: one row per cell, per-eval-step curves, and means with 95%
intervals over seeds.

    results.csv        one row per cell: grid levels, status, final training metrics,
                       final ID/OOD avg@k and pass@k (per data set and pooled), the base
                       model's step-0 evaluation, distinct training problems (in the data,
                       and drawn as prompts at least once), and the
                       periodic evaluation as `step<N>_id_avg@k` / `step<N>_ood_avg@k`
                       (and `id_curve_mean`, its ID mean after step 0), with the training
                       reward since the previous evaluation as `step<N>_train_reward`
    results_steps.csv  one row per cell, evaluation step and data set (periodic evaluation)
    aggregate.csv      one row per group of cells that differ only in `aggregate_over`
                       (seeds): n, then mean / ci_low / ci_high of every numeric column
    results.json       all of the above plus the shared settings and each cell's pass@k curve

In-distribution is the first evaluation source of a cell (the recipes list the training
family's held-out split first); every other source counts as out-of-distribution.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from functools import lru_cache
from pathlib import Path
from statistics import fmean
from typing import Any

from sdlab.config import build_config, read_yaml
from sdlab.core.data import dataset_name
from sdlab.core.io import atomic_write_text, read_jsonl, write_json
from sdlab.core.stats import FRACTION, mean_and_ci95

logger = logging.getLogger(__name__)

TRAIN_FIELDS = ("reward_mean", "accuracy", "response_tokens_mean", "markers_per_response", "markers_per_1k_tokens")


def eval_by_step(rows: list[dict[str, Any]]) -> dict[int, dict[str, dict[str, Any]]]:
    """eval.jsonl rows -> {step: {dataset: metrics}} (a resumed run's later row wins)."""
    steps: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        steps.setdefault(int(row["step"]), {})[row["dataset"]] = row
    return dict(sorted(steps.items()))


def role_scores(metrics: dict[str, dict[str, Any]], id_dataset: str | None, key: str = "avg@k") -> dict[str, float | None]:
    """{"id": score on the ID data set, "ood": mean over the other data sets}."""
    ood = [m[key] for name, m in metrics.items() if name != id_dataset and m.get(key) is not None]
    id_metrics = metrics.get(id_dataset) if id_dataset else None
    return {"id": id_metrics.get(key) if id_metrics else None, "ood": fmean(ood) if ood else None}


@lru_cache(maxsize=64)
def distinct_problems(spec: str | None) -> int | None:
    """Distinct training problems (ids) of a data spec; None when it cannot be loaded here."""
    if not spec:
        return None
    from sdlab import SdlabError
    from sdlab.core.data import load_problems

    try:
        return len({problem.id for problem in load_problems(spec)})
    except (SdlabError, OSError) as err:
        logger.warning("distinct problems of %s unknown: %s", spec, err)
        return None


def last_third_mean(values: list[float | None]) -> float | None:
    """Mean of a per-step series over its last third of steps (the last ceil(n / 3) values; None
    values skipped): the learning-rate rule's score, fixed before any result (docs/training.md)."""
    tail = values[len(values) - math.ceil(len(values) / 3) :] if values else []
    tail = [v for v in tail if is_number(v)]
    return fmean(tail) if tail else None


def reward_by_window(training: list[dict[str, Any]], eval_steps: list[int]) -> dict[int, float]:
    """Mean training reward over the steps since the previous periodic evaluation, at each one
    after step 0 ({20: mean of steps 1-20, 40: of 21-40, ...}): the training-reward curve at the
    steps where the ID and OOD curves are measured, so that methods compare at matched steps."""
    out = {}
    for before, step in zip([0, *eval_steps], eval_steps):
        window = [r["reward_mean"] for r in training if before < r.get("step", 0) <= step and is_number(r.get("reward_mean"))]
        if step > 0 and window:
            out[step] = fmean(window)
    return out


def id_curve_mean(steps: dict[int, dict[str, dict[str, Any]]], id_dataset: str | None) -> float | None:
    """Mean ID avg@k over the periodic evaluations after step 0: how high and how early the ID
    curve rises, one number a knob-selection rule can use (docs/remedies.md)."""
    scores = [role_scores(by_dataset, id_dataset)["id"] for step, by_dataset in steps.items() if step > 0]
    scores = [score for score in scores if is_number(score)]
    return fmean(scores) if scores else None


def choose_level(scores: dict[float, float | None]) -> float | None:
    """The level (e.g. a learning rate) with the highest score; ties go to the smaller level;
    levels without a score take no part. None when no level has one."""
    scored = [(score, -level) for level, score in scores.items() if is_number(score)]
    return -max(scored)[1] if scored else None


def select_levels(rows: list[dict[str, Any]], *, axis: str, per: list[str], metric: str) -> list[dict[str, Any]]:
    """For each group of `per` levels (e.g. each method), the `axis` level chosen by `choose_level`
    on `metric` averaged over the group's cells at that level (seeds), with every level's score.

    Only finished cells score (a partial run's "last third" is not the rule's), and a group
    chooses nothing until all its cells have finished: a rule applied to some of its levels
    would pick among those alone. `finished` says how far the group is."""
    groups: dict[tuple, dict[float, list[float]]] = {}
    counts: dict[tuple, list[int]] = {}
    for row in rows:
        key = tuple(row.get(name) for name in per)
        values = groups.setdefault(key, {}).setdefault(float(row[axis]), [])
        done = row.get("status", "done") == "done"
        counts.setdefault(key, [0, 0])[0] += done
        counts[key][1] += 1
        if done and is_number(row.get(metric)):
            values.append(row[metric])
    out = []
    for key, by_level in groups.items():
        scores = {level: fmean(values) if values else None for level, values in sorted(by_level.items())}
        finished, total = counts[key]
        chosen = choose_level(scores) if finished == total else None
        out.append({**dict(zip(per, key)), "metric": metric, "scores": scores, "finished": f"{finished}/{total}", axis: chosen})
    return out


def collect_cell(cell_dir: Path, *, levels: dict[str, str], recipe: dict[str, Any], status: str) -> dict[str, Any]:
    """One cell's record: training summary, evaluation curve, final and base ID/OOD scores."""

    sources = (recipe.get("eval") or {}).get("sources") or []
    final_dir = cell_dir / "final_eval"
    if (final_dir / "config.yaml").exists():
        sources = read_yaml(final_dir / "config.yaml").get("data") or sources
    id_dataset = dataset_name(sources[0]) if sources else None
    summary = json.loads((cell_dir / "summary.json").read_text()) if (cell_dir / "summary.json").exists() else {}
    steps = eval_by_step(read_jsonl(cell_dir / "eval.jsonl"))
    training = read_jsonl(cell_dir / "metrics.jsonl")
    final = json.loads((final_dir / "metrics.json").read_text()) if (final_dir / "metrics.json").exists() else None
    if final is None and steps and summary:
        final = steps[max(steps)]
    base = steps.get(0)
    train_final = summary.get("final") or {}
    row: dict[str, Any] = {
        "cell": cell_dir.name,
        **levels,
        "status": status,
        "method": levels.get("method", recipe.get("method")),  # an axis named `method` keeps its labels (grpo-1e-4, sdpo-nothink): the arms compared
        "train_data": (recipe.get("data") or {}).get("train") or ((recipe.get("sft") or {}).get("dataset")),
        "distinct_train_problems": distinct_problems((recipe.get("data") or {}).get("train")),
        "distinct_problems_seen": summary.get("distinct_problems_seen"),  # drawn as prompts at least once
        "steps": summary.get("steps"),
        "wall_time_s": summary.get("wall_time_s"),
        "early_warning_step": summary.get("early_warning_step"),
        **{f"train_{name}": train_final.get(name) for name in TRAIN_FIELDS},
        "train_reward_last_third": last_third_mean([r.get("reward_mean") for r in training]),
        "id_curve_mean": id_curve_mean(steps, id_dataset),
        "id_dataset": id_dataset,
    }
    for prefix, metrics in (("", final), ("base_", base)):
        for key, column in (("avg@k", "avg@k"), ("pass@k", "pass@k"), ("mean_response_tokens", "tokens"), ("mean_markers_paper", "markers")):
            scores = role_scores(metrics or {}, id_dataset, key)
            row[f"{prefix}id_{column}"], row[f"{prefix}ood_{column}"] = scores["id"], scores["ood"]
    for name, metrics in (final or {}).items():
        row[f"{name}/avg@k"], row[f"{name}/pass@k"] = metrics.get("avg@k"), metrics.get("pass@k")
    # the run's own interval over ID problems: the only interval a one-seed group has
    row["id_avg@k_problems_ci_low"], row["id_avg@k_problems_ci_high"] = ((final or {}).get(id_dataset) or {}).get("avg@k_ci95") or (None, None)
    curve = [{"step": step, **{f"{r}_avg@k": v for r, v in role_scores(by_dataset, id_dataset).items()}, "datasets": by_dataset} for step, by_dataset in steps.items()]
    for step, reward in reward_by_window(training, sorted(steps)).items():
        row[f"step{step}_train_reward"] = reward
    for point in curve:  # the periodic evaluation, wide, so that seeds aggregate per step too
        row[f"step{point['step']}_id_avg@k"], row[f"step{point['step']}_ood_avg@k"] = point["id_avg@k"], point["ood_avg@k"]
        for name, metrics in point["datasets"].items():  # and per data set, as the final evaluation is
            row[f"{name}/step{point['step']}_avg@k"] = metrics.get("avg@k")
    return {
        "row": row,
        "curve": curve,
        "pass_curves": {name: m.get("pass_curve") for name, m in (final or {}).items() if m.get("pass_curve")},
        "training": training,
    }


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def column_range(column: str) -> tuple[float, float] | None:
    """What a column's values can be: scores (avg@k, pass@k, the rollouts' accuracy) lie in
    [0, 1], lengths and marker counts are not negative; other columns (a reward, whose range is
    its function's) are left alone."""
    if "avg@k" in column or "pass@k" in column or column.endswith("accuracy"):
        return FRACTION
    if "tokens" in column or "markers" in column:
        return (0.0, math.inf)
    return None


def aggregate(rows: list[dict[str, Any]], *, group_by: list[str], over: list[str]) -> list[dict[str, Any]]:
    """Group rows by `group_by` columns; per numeric column the mean and Student-t 95% interval
    over the group (seeds are the unit). Once a group has a finished cell, only its finished cells
    count, so a cell stopped at step 23 never mixes with final values; until then its unfinished
    cells give a progress view. `n` counts the group's cells, `finished` the finished ones."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(key) for key in group_by), []).append(row)
    skip = set(group_by) | set(over) | {"cell", "status"}
    out = []
    for key, members in groups.items():
        record: dict[str, Any] = dict(zip(group_by, key))
        record["n"] = len(members)
        finished = [m for m in members if m.get("status", "done") == "done"]
        record["finished"] = len(finished)
        members = finished or members
        columns = [c for c in dict.fromkeys(c for m in members for c in m) if c not in skip]
        for column in columns:
            values = [m[column] for m in members if is_number(m.get(column))]
            if not values:
                if len({str(m.get(column)) for m in members}) == 1 and members[0].get(column) is not None:
                    record[column] = members[0][column]  # a shared label such as method or id_dataset
                continue
            mean, low, high = mean_and_ci95(values, within=column_range(column))
            record[f"{column}_mean"] = mean
            record[f"{column}_ci_low"] = None if math.isnan(low) else low
            record[f"{column}_ci_high"] = None if math.isnan(high) else high
        out.append(record)
    return out


def pooling_key(results: dict[str, Any]) -> str:
    """Sweeps with equal keys are one experiment run in parts (a seed added later, or each
    method in its own directory): same name, axes and aggregation, and every shared setting
    (those the grid does not set) equal."""
    return json.dumps([results["name"], results["axes"], results["aggregate_over"], results["shared"]], sort_keys=True, default=str)


def pool_results(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One result over the cells of every part, aggregated afresh (intervals over all seeds)."""
    keys = {pooling_key(part) for part in parts}
    if len(keys) != 1:
        raise ValueError(f"{len(keys)} different experiments cannot be pooled")
    first = parts[0]
    rows = [row for part in parts for row in part["rows"]]
    group_by = [axis for axis in first["axes"] if axis not in first["aggregate_over"]]
    return {
        **first,
        "cells": [cell for part in parts for cell in part["cells"]],
        "rows": rows,
        "aggregate": aggregate(rows, group_by=group_by, over=first["aggregate_over"]),
        "selection": select_levels(rows, **first["select"]) if first.get("select") else None,
    }


def collect_results(sweep_dir: str | Path) -> dict[str, Any]:
    """Read every cell of the sweep in `sweep_dir` (its sweep.yaml names the grid)."""
    from sdlab.config.schema import SweepConfig
    from sdlab.experiments.grid import CELLS, SWEEP_FILE, cell_status, expand_grid, grid_keys, shared_settings

    sweep_dir = Path(sweep_dir)
    config = build_config(SweepConfig, read_yaml(sweep_dir / SWEEP_FILE), source=str(sweep_dir / SWEEP_FILE))
    config.output_dir = str(sweep_dir)  # the directory may have been moved since it ran
    cells = expand_grid(config)
    records = []
    for cell in cells:
        cell_dir = sweep_dir / CELLS / cell.name
        status = cell_status(cell_dir, needs_final_eval=config.final_eval is not None) if cell_dir.exists() else "start"
        status = {"start": "pending", "resume": "partial", "evaluate": "partial"}.get(status, status)
        records.append({"cell": cell.name, "levels": cell.levels, **collect_cell(cell_dir, levels=cell.levels, recipe=cell.recipe, status=status)})
    rows = [record["row"] for record in records]
    axes = list(config.grid)
    group_by = [axis for axis in axes if axis not in config.aggregate_over]
    try:
        shared = shared_settings([cell.config() for cell in cells])
    except Exception as err:  # a data file gone since the run: the table is still worth writing
        logger.warning("shared settings unknown: %s", err)
        shared = {}
    # What a part run on its own (one seed, one method, one level) holds fixed is still the grid's.
    set_by_grid = grid_keys(config) | {"output_dir"}
    return {
        "name": config.name,
        "description": config.description,
        "axes": axes,
        "aggregate_over": config.aggregate_over,
        "shared": {k: v for k, v in shared.items() if k not in set_by_grid},
        "cells": records,
        "rows": rows,
        "aggregate": aggregate(rows, group_by=group_by, over=config.aggregate_over),
        "select": config.select.model_dump() if config.select else None,
        "remedies": config.remedies.model_dump() if config.remedies else None,
        "selection": select_levels(rows, **config.select.model_dump()) if config.select else None,
    }


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Columns in first-seen order over all rows; written atomically."""
    columns = list(dict.fromkeys(column for row in rows for column in row))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows([{k: "" if v is None else v for k, v in row.items()} for row in rows])
    atomic_write_text(path, text.getvalue())


def step_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for record in results["cells"]:
        for point in record["curve"]:
            for dataset, metrics in point["datasets"].items():
                rows.append({"cell": record["cell"], **record["levels"], "step": point["step"], "dataset": dataset,
                             "role": "id" if dataset == record["row"]["id_dataset"] else "ood",
                             "avg@k": metrics.get("avg@k"), "pass@k": metrics.get("pass@k")})
    return rows


def write_results(sweep_dir: str | Path, results: dict[str, Any]) -> None:
    sweep_dir = Path(sweep_dir)
    write_csv(sweep_dir / "results.csv", results["rows"])
    write_csv(sweep_dir / "results_steps.csv", step_rows(results))
    write_csv(sweep_dir / "aggregate.csv", results["aggregate"])
    write_json(sweep_dir / "results.json", results)
