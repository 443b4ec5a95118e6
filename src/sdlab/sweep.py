"""`sdlab sweep`: one base recipe, a grid of cells, matched comparisons by construction.

    sdlab sweep recipes/sweeps/coverage.yaml
    sdlab sweep recipes/sweeps/teacher.yaml base.steps=5 output_dir=runs/sweeps/teacher-short

A sweep file states the shared part of every run once (`recipe:` file and/or `base:` keys:
model, data, batch, rollouts, steps, evaluation) and a `grid:` of axes. An axis is either a
list of values for one dotted recipe key (`method: [grpo, sdpo]`, `sdpo.teacher: [fixed,
ema]`) or a mapping of named levels to several keys set together (`coverage: {8x8:
{data.train: organism:linmod:8x8}}`). Cells are the product of the axes; a cell only
overrides its grid keys, so data, batch, rollout budget and evaluation match across cells.
The string `{sweep_dir}` in any value is replaced by the sweep's directory (shared SFT data).

Each cell is one `sdlab.train` run in `SWEEP_DIR/cells/<cell>/`, run in order. Rerunning
skips finished cells (their `summary.json` exists), resumes an interrupted one from its
last checkpoint, and refuses a cell whose saved config differs from the sweep's (change
`output_dir` or pass --force). After every cell, `sdlab.sweep_results` rewrites
`results.csv` / `aggregate.csv` / `results.json`, so an interrupted sweep keeps its table.
Parts of one grid may run side by side into one directory (`'grid.method=[grpo]'` in one
process, `'grid.method=[sdpo]'` in another): its `sweep.yaml` records the union of their levels,
so the results collect every part.

With a `final_eval:` section each trained model is also evaluated by `sdlab eval` (k samples,
avg@k and the pass@k curve) into `cells/<cell>/final_eval/`. Under `accelerate launch` with
several processes that step is skipped; running the same sweep again in one process finds
every cell trained and only evaluates.
"""

from __future__ import annotations

import copy
import itertools
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, PositiveInt, field_validator, model_validator

from sdlab import SdlabError
from sdlab.config import StrictModel, apply_overrides, build_config, dump_config, parse_override, read_yaml
from sdlab.train_config import TrainConfig, check_paths

logger = logging.getLogger(__name__)

SWEEP_FILE = "sweep.yaml"  # the resolved sweep, written into the sweep directory
CELLS = "cells"


class FinalEvalConfig(StrictModel):
    """`sdlab eval` on every cell's final model: the same problems, k and sampling for all."""

    sources: list[str] | None = None  # default: the cells' eval.sources (first = in-distribution)
    k: PositiveInt = 16
    limit: PositiveInt | None = None  # problems per source
    max_new_tokens: PositiveInt = 256
    temperature: float = Field(0.6, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    top_k: int = Field(20, ge=0)
    batch_size: PositiveInt = 8


class SelectConfig(StrictModel):
    """A selection rule fixed before any result: per group of `per` levels, the `axis` level with
    the highest `metric` (mean over seeds); ties go to the smaller level."""

    axis: str = "lr"
    per: list[str] = Field(default_factory=lambda: ["method"])
    metric: str = "train_reward_last_third"  # mean training reward over the last third of the steps


class SweepConfig(StrictModel):
    name: str = "sweep"
    description: str = ""
    output_dir: str
    recipe: str | None = None  # a training recipe file; `base` keys are applied over it
    base: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any] | dict[str, dict[str, Any]]]
    aggregate_over: list[str] = Field(default_factory=lambda: ["seed"])  # axes averaged (mean, 95% CI)
    # refuse cells whose steps do not draw every distinct training problem at least once (coverage
    # sweeps); otherwise such cells only get a warning
    require_full_coverage: bool = False
    select: SelectConfig | None = None  # e.g. choose each method's learning rate (recipes/sweeps/lr.yaml)
    final_eval: FinalEvalConfig | None = None

    @field_validator("grid")
    @classmethod
    def _axes_not_empty(cls, grid: dict) -> dict:
        if not grid:
            raise ValueError("the grid needs at least one axis, e.g. `method: [grpo, sdpo]`")
        for axis, levels in grid.items():
            if not levels:
                raise ValueError(f"axis {axis!r} has no levels")
            labels = [sanitize(str(level)) for level in levels]
            if len(set(labels)) != len(labels):
                raise ValueError(f"axis {axis!r}: levels {labels} are not distinct as directory names")
        return grid

    @model_validator(mode="after")
    def _selection_names_axes(self) -> "SweepConfig":
        if self.select is not None:
            for axis in (self.select.axis, *self.select.per):
                if axis not in self.grid:
                    raise ValueError(f"select: {axis!r} is not a grid axis (axes: {', '.join(self.grid)})")
            if not isinstance(self.grid[self.select.axis], list):
                raise ValueError(f"select.axis {self.select.axis!r} must be a list of numbers (e.g. lr: [1.0e-5, 1.0e-4])")
        return self


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


def sanitize(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "x"


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
    a dotted recipe key (`grid.sdpo.context=[regenerated]`)."""
    data = read_yaml(path)
    sweep_level, recipe_level = [], []
    for override in overrides or []:
        (sweep_level if override.split("=", 1)[0].split(".")[0] in SweepConfig.model_fields else recipe_level).append(override)
    for override in sweep_level:
        path_parts, value = parse_override(override)
        if path_parts[0] == "grid" and len(path_parts) > 2:  # an axis is one dotted recipe key: grid.sdpo.context=[...]
            if not isinstance(data.get("grid"), dict):
                raise SdlabError(f"override {override!r}: {path} has no grid to set an axis of")
            data["grid"][".".join(path_parts[1:])] = value
        else:
            apply_overrides(data, [override])
    config = build_config(SweepConfig, data, source=str(path))
    set_by_grid = grid_keys(config)
    for override in recipe_level:
        path_parts, value = parse_override(override)
        key = ".".join(path_parts)
        if key in set_by_grid:
            raise SdlabError(f"override {override!r}: {key} is set by the grid, which would win; override the axis instead (e.g. 'grid.{key}=[...]')")
        config.base[key] = value
    return config


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
    from sdlab.data import load_problems
    from sdlab.grpo import problems_drawn

    spec = config.data.train if config.data is not None and config.method != "sft" else None
    if spec is None or not (spec.startswith("organism:") or Path(spec).exists()):
        return None
    ids = [problem.id for problem in load_problems(spec, limit=config.data.limit)]
    try:
        drawn = problems_drawn(ids, prompts_per_step=config.batch, steps=config.steps, seed=config.seed)
    except ValueError as err:
        raise SdlabError(f"{config.output_dir}: data.train {spec!r}: {err}; lower batch or use more problems") from None
    return len(drawn), len(set(ids))


# ---------------------------------------------------------------- running


def cell_status(cell_dir: Path, *, needs_final_eval: bool) -> str:
    """done | evaluate (trained, final eval missing) | resume (has a checkpoint) | start."""
    if (cell_dir / "summary.json").exists():
        if needs_final_eval and not final_eval_complete(cell_dir):
            return "evaluate"
        return "done"
    # the directories `sdlab.train.last_checkpoint` picks from (without importing transformers)
    checkpoints = [p for p in cell_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-", 1)[1].isdigit()]
    return "resume" if checkpoints else "start"


def final_eval_complete(cell_dir: Path) -> bool:
    import json

    metrics, config = cell_dir / "final_eval" / "metrics.json", cell_dir / "final_eval" / "config.yaml"
    if not metrics.exists() or not config.exists():
        return False
    expected = yaml.safe_load(config.read_text()).get("data") or []
    return len(json.loads(metrics.read_text())) == len(expected)


def check_same_config(cell: Cell, config: TrainConfig) -> None:
    saved = Path(config.output_dir) / "config.yaml"
    if saved.exists() and saved.read_text() != dump_config(config):
        raise SdlabError(
            f"{saved}: cell {cell.name} was started with a different recipe than the sweep now gives it; "
            "rerun with --force to start the sweep over, or set output_dir to a new directory"
        )


def run_final_eval(config: TrainConfig, final: FinalEvalConfig) -> None:
    from sdlab.evaluate import EvalConfig, run_eval
    from sdlab.train import apply_threads

    apply_threads(config)  # as training did (a rerun may only evaluate)
    out = Path(config.output_dir) / "final_eval"
    sources = final.sources or config.eval.sources
    if not sources:
        raise SdlabError("final_eval: no sources; set final_eval.sources or the recipe's eval.sources")
    eval_config = EvalConfig(
        model=str(Path(config.output_dir) / "model"), data=sources, k=final.k, out=str(out), max_new_tokens=final.max_new_tokens,
        temperature=final.temperature, top_p=final.top_p, top_k=final.top_k, enable_thinking=config.enable_thinking,
        backend="auto", limit=final.limit, batch_size=final.batch_size, seed=config.seed,
    )
    run_eval(eval_config, resume=out.exists(), force=False)


CellCallback = Callable[[int, int, Cell, str], None]  # (index, total, cell, status before running)


def run_sweep(config: SweepConfig, *, force: bool = False, on_cell: CellCallback | None = None, reward_funcs: Any = None) -> dict[str, Any]:
    """Run every unfinished cell in order; returns the collected results (also on disk).
    `reward_funcs` replaces the 0/1 math reward in every cell (as in `run_training`)."""
    from sdlab.sweep_results import collect_results, write_results
    from sdlab.train import run_training, world_size

    distributed = world_size() > 1  # under `accelerate launch`: every process trains every cell
    cells = validate_sweep(config)
    sweep_dir = Path(config.output_dir)
    if force and sweep_dir.exists() and is_main_process():
        shutil.rmtree(sweep_dir)
    for cell, train_config in cells:
        check_same_config(cell, train_config)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    resolved = config.model_copy(update={"recipe": None, "base": base_recipe(config)})  # self-contained: reports need only this directory

    def record() -> None:
        (sweep_dir / SWEEP_FILE).write_text(dump_config(with_recorded_levels(resolved, sweep_dir / SWEEP_FILE)))

    def record_and_collect() -> dict[str, Any]:
        """Record this part's levels again before every collection (a part started at the same
        moment may have overwritten them), then collect what the directory holds."""
        record()
        return collect_results(sweep_dir)

    if is_main_process():
        record()
    for index, (cell, train_config) in enumerate(cells):
        status = cell_status(Path(train_config.output_dir), needs_final_eval=config.final_eval is not None)
        if on_cell:
            on_cell(index, len(cells), cell, status)
        if status in ("start", "resume"):
            logger.info("sweep %s: cell %d/%d %s (%s)", config.name, index + 1, len(cells), cell.name, status)
            # A cell without a checkpoint starts over: rows logged before an interruption would be stale.
            run_training(train_config, resume=status == "resume", force=status == "start", reward_funcs=reward_funcs)
        if status != "done" and config.final_eval is not None:
            if distributed:
                logger.warning("cell %s: final evaluation skipped under %d processes; rerun this sweep in one process to evaluate it", cell.name, world_size())
            else:
                run_final_eval(train_config, config.final_eval)
        if status != "done" and is_main_process():
            write_results(sweep_dir, record_and_collect())
    if not is_main_process():
        return collect_results(sweep_dir)
    results = record_and_collect()
    write_results(sweep_dir, results)
    return results


def with_recorded_levels(resolved: SweepConfig, recorded_file: Path) -> SweepConfig:
    """A sweep run in parts into one directory (`grid.method=[grpo]` in one process,
    `grid.method=[sdpo]` in another) records the union of the parts' levels, so that its results
    collect every part and not only the last one started. Anything else that differs (another
    sweep, other settings, other axes, a level redefined) is recorded as given."""
    if not recorded_file.is_file():
        return resolved
    try:
        recorded = build_config(SweepConfig, read_yaml(recorded_file), source=str(recorded_file))
    except SdlabError:
        return resolved
    if recorded.model_dump(exclude={"grid"}) != resolved.model_dump(exclude={"grid"}) or list(recorded.grid) != list(resolved.grid):
        return resolved
    grid: dict[str, Any] = {}
    for axis, levels in resolved.grid.items():
        before = recorded.grid[axis]
        if isinstance(levels, list) and isinstance(before, list):
            grid[axis] = before + [level for level in levels if level not in before]
        elif isinstance(levels, dict) and isinstance(before, dict) and all(before.get(label, setting) == setting for label, setting in levels.items()):
            grid[axis] = {**before, **levels}
        else:
            return resolved
    return resolved.model_copy(update={"grid": grid})


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0

