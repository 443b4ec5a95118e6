"""A sweep's grid: the sweep file, its cells (product of the axes, each a resolved training
recipe) and each cell's state on disk. Shared by running a sweep and collecting its results."""

from __future__ import annotations

import copy
import itertools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sdlab import SdlabError
from sdlab.config import apply_overrides, build_config, parse_override, read_yaml
from sdlab.config.checks import check_paths
from sdlab.config.schema import DATA_SECTIONS, SweepConfig, TrainConfig, sanitize
from sdlab.config.sources import expand_data_dir, source_kind

logger = logging.getLogger(__name__)

SWEEP_FILE = "sweep.yaml"  # the resolved sweep, written into the sweep directory
FINAL_EVAL_DIR = "final_eval"  # a trained cell's final evaluation (`final_eval:` in a sweep file)
CELLS = "cells"


@dataclass(frozen=True)
class Cell:
    """One run of the grid: its name, its level on every axis and its resolved recipe."""

    name: str
    levels: dict[str, str]
    overrides: dict[str, Any]  # dotted recipe key -> value set by the grid
    recipe: dict[str, Any] = field(repr=False)

    def config(self) -> TrainConfig:
        config = build_config(TrainConfig, self.recipe, source=f"sweep cell {self.name}")
        check_paths(config, source=f"sweep cell {self.name}")
        return config


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """`set_dotted(d, "sdpo.teacher", "ema")`; a mapping value is merged into an existing section."""
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SdlabError(f"grid key {key!r}: {part!r} is not a section of the recipe")
    if isinstance(value, dict) and isinstance(node.get(last), dict):
        for sub_key, sub_value in value.items():
            set_dotted(node[last], sub_key, sub_value)
    else:
        node[last] = copy.deepcopy(value)


def substitute(value: Any, replacements: dict[str, str]) -> Any:
    """Replace `{sweep_dir}`-style placeholders in every string of a nested value."""
    if isinstance(value, str):
        for placeholder, text in replacements.items():
            value = value.replace("{" + placeholder + "}", text)
        return value
    if isinstance(value, dict):
        return {k: substitute(v, replacements) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, replacements) for v in value]
    return value


def axis_levels(axis: str, levels: list[Any] | dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """[(level label, {dotted key: value})] for a list axis (one key) or a named-levels axis."""
    if isinstance(levels, dict):
        return [(str(label), dict(values)) for label, values in levels.items()]
    return [(str(value), {axis: value}) for value in levels]


def grid_keys(config: SweepConfig) -> set[str]:
    """The recipe keys some axis level sets: per cell, never shared settings of the sweep."""
    return {key for axis, levels in config.grid.items() for _, values in axis_levels(axis, levels) for key in values}


def base_recipe(config: SweepConfig) -> dict[str, Any]:
    recipe = read_yaml(config.recipe) if config.recipe else {}
    for key, value in config.base.items():
        set_dotted(recipe, key, value)
    return recipe


def expand_grid(config: SweepConfig) -> list[Cell]:
    """Every cell of the grid (product of the axes, in file order), each with its resolved recipe."""
    base = base_recipe(config)
    sweep_dir = Path(config.output_dir)
    axes = [[(axis, label, values) for label, values in axis_levels(axis, levels)] for axis, levels in config.grid.items()]
    cells = []
    for combination in itertools.product(*axes):
        name = "__".join(f"{sanitize(axis)}-{sanitize(label)}" for axis, label, _ in combination)
        overrides: dict[str, Any] = {}
        recipe = copy.deepcopy(base)
        for axis, _, values in combination:
            for key, value in values.items():
                if key in overrides:
                    raise SdlabError(f"sweep grid: key {key!r} is set by two axes (cell {name}); each key belongs to one axis")
                overrides[key] = value
                set_dotted(recipe, key, value)
        recipe["output_dir"] = str(sweep_dir / CELLS / name)
        recipe = substitute(recipe, {"sweep_dir": str(sweep_dir)})
        recipe = {key: expand_data_dir(value, recipe.get("data_dir")) if key in DATA_SECTIONS else value for key, value in recipe.items()}
        cells.append(Cell(name=name, levels={axis: label for axis, label, _ in combination}, overrides=overrides, recipe=recipe))
    return cells


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def varied_keys(configs: list[TrainConfig]) -> set[str]:
    """Resolved recipe keys (dotted) whose values differ between cells; everything else is shared."""
    flats = [flatten(c.model_dump(mode="json")) for c in configs]
    keys = set().union(*flats)
    return {key for key in keys if len({yaml.safe_dump(flat.get(key)) for flat in flats}) > 1}


def shared_settings(configs: list[TrainConfig]) -> dict[str, Any]:
    varied = varied_keys(configs)
    return {key: value for key, value in flatten(configs[0].model_dump(mode="json")).items() if key not in varied}


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> SweepConfig:
    """Sweep file + overrides. An override whose first key is not a sweep field goes to `base`
    (`steps=2` means `base.steps=2`); `grid.<axis>=[...]` replaces one axis, whose name may be
    a dotted recipe key (`grid.sdpo.context=[regenerated]`). On an axis of named levels a list
    of labels keeps those levels (`'grid.coverage=[1x64, 671]'`), after the whole file is
    validated, so a remedies rule may name levels the selection leaves out; the sweep
    directory records every level the rule names (`SweepConfig.recorded_grid`), which is
    every level of the file unless `remedies.knobs` is overridden, as the second build does
    with the levels chosen on the first."""
    data = read_yaml(path)
    sweep_level, recipe_level, selections = [], [], []
    for override in overrides or []:
        (sweep_level if override.split("=", 1)[0].split(".")[0] in SweepConfig.model_fields else recipe_level).append(override)
    for override in sweep_level:
        path_parts, value = parse_override(override)
        if path_parts[0] == "grid" and len(path_parts) > 2:  # an axis is one dotted recipe key: grid.sdpo.context=[...]
            if not isinstance(data.get("grid"), dict):
                raise SdlabError(f"override {override!r}: {path} has no grid to set an axis of")
            data["grid"][".".join(path_parts[1:])] = value
        elif path_parts[0] == "grid" and len(path_parts) == 2 and isinstance(value, list) and isinstance((data.get("grid") or {}).get(path_parts[1]), dict):
            selections.append((path_parts[1], value, override))
        else:
            apply_overrides(data, [override])
    config = build_config(SweepConfig, data, source=str(path))
    for axis, labels, override in selections:
        file_levels = config.grid[axis]
        config = config.model_copy(update={"grid": {**config.grid, axis: named_levels(file_levels, labels, override, path)}})
        if config.remedies is not None and axis == config.remedies.axis:
            named = config.remedies.named_levels()
            config._remedy_levels = {label: setting for label, setting in file_levels.items() if label in named}
    set_by_grid = grid_keys(config)
    for override in recipe_level:
        path_parts, value = parse_override(override)
        key = ".".join(path_parts)
        if key in set_by_grid:
            raise SdlabError(f"override {override!r}: {key} is set by the grid, which would win; override the axis instead (e.g. 'grid.{key}=[...]')")
        config.base[key] = value
    return config


def named_levels(levels: dict[Any, Any], labels: list[Any], override: str, path: str | Path) -> dict[Any, Any]:
    """The named levels whose labels are listed, in the listed order (YAML reads `64` as a
    number, the file's label may be the string "64": both name the same level)."""
    by_label = {str(label): label for label in levels}
    unknown = [str(label) for label in labels if str(label) not in by_label]
    if unknown:
        raise SdlabError(f"override {override!r}: {path} has no level {', '.join(unknown)} on that axis; its levels: {', '.join(by_label)}")
    return {by_label[str(label)]: levels[by_label[str(label)]] for label in labels}


def validate_sweep(config: SweepConfig) -> list[tuple[Cell, TrainConfig]]:
    """Expand the grid and validate every cell's recipe before anything runs; check that each
    cell's steps draw every distinct training problem (`require_full_coverage`: or refuse)."""
    cells = [(cell, cell.config()) for cell in expand_grid(config)]
    short = []
    for cell, train_config in cells:
        coverage = planned_coverage(train_config)
        if coverage and coverage[0] < coverage[1]:
            short.append(f"cell {cell.name}: {train_config.steps} steps x {train_config.batch} prompts (seed {train_config.seed}) draw {coverage[0]} of its {coverage[1]} distinct training problems")
    if short and config.require_full_coverage:
        raise SdlabError("require_full_coverage: " + "; ".join(short) + ". Raise base.steps or base.batch (or make each level's row count a multiple of batch)")
    for line in short:
        logger.warning("%s: %s; the rest are never trained on", config.name, line)
    return cells


def planned_coverage(config: TrainConfig) -> tuple[int, int] | None:
    """(distinct problems the run's sampler will draw, distinct problems in its training data),
    before training; None for SFT and for data that is not local (a hub id)."""
    from sdlab.core.data import load_problems
    from sdlab.training.grpo import problems_drawn

    spec = config.data.train if config.data is not None and config.method != "sft" else None
    if spec is None or source_kind(spec) not in ("provider", "local"):
        return None
    ids = [problem.id for problem in load_problems(spec, limit=config.data.limit)]
    try:
        drawn = problems_drawn(ids, prompts_per_step=config.batch, steps=config.steps, seed=config.seed)
    except ValueError as err:
        raise SdlabError(f"{config.output_dir}: data.train {spec!r}: {err}; lower batch or use more problems") from None
    return len(drawn), len(set(ids))


def cell_status(cell_dir: Path, *, needs_final_eval: bool) -> str:
    """done | evaluate (trained, final eval missing) | resume (has a checkpoint) | start."""
    if (cell_dir / "summary.json").exists():
        if needs_final_eval and not final_eval_complete(cell_dir):
            return "evaluate"
        return "done"
    # the directories `sdlab.training.run.last_checkpoint` picks from (without importing transformers)
    checkpoints = [p for p in cell_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-", 1)[1].isdigit()]
    return "resume" if checkpoints else "start"


def final_eval_complete(cell_dir: Path) -> bool:
    metrics, config = cell_dir / FINAL_EVAL_DIR / "metrics.json", cell_dir / FINAL_EVAL_DIR / "config.yaml"
    if not metrics.exists() or not config.exists():
        return False
    expected = yaml.safe_load(config.read_text()).get("data") or []
    return len(json.loads(metrics.read_text())) == len(expected)
