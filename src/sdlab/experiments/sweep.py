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

Each cell is one `sdlab.training.run` run in `SWEEP_DIR/cells/<cell>/`, run in order. Rerunning
skips finished cells (their `summary.json` exists), resumes an interrupted one from its
last checkpoint, and refuses a cell whose saved config differs from the sweep's (change
`output_dir` or pass --force). After every cell, `sdlab.experiments.results` rewrites
`results.csv` / `aggregate.csv` / `results.json`, so an interrupted sweep keeps its table.
Parts of one grid may run side by side into one directory (`'grid.method=[grpo]'` in one
process, `'grid.method=[sdpo]'` in another): its `sweep.yaml` records the union of their levels,
so the results collect every part.

Cells that start from the same model with the same seed share its step-0 evaluation
(`SWEEP_DIR/start_eval/`), the same numbers each would compute.

`reuse: [DIR, ...]` names other sweeps' directories: a cell whose very recipe has finished in
one of them is copied (with its final evaluation when that matches) instead of trained again,
and `reused_from.txt` in the copy names the original.

With a `final_eval:` section each trained model is also evaluated by `sdlab eval` (k samples,
avg@k and the pass@k curve) into `cells/<cell>/final_eval/`. Under `accelerate launch` with
several processes that step is skipped; running the same sweep again in one process finds
every cell trained and only evaluates.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from sdlab import SdlabError
from sdlab.config import build_config, dump_config, read_yaml
from sdlab.config.schema import EvalConfig, FinalEvalConfig, SweepConfig, TrainConfig
from sdlab.config.sources import expand_data_dir
from sdlab.core.io import atomic_write_text, file_lock
from sdlab.experiments.grid import FINAL_EVAL_DIR, SWEEP_FILE, Cell, base_recipe, cell_status, final_eval_complete, validate_sweep
from sdlab.experiments.results import collect_results, write_results

logger = logging.getLogger(__name__)
REUSED_FILE = "reused_from.txt"  # in a cell copied from another sweep: the original's directory
START_EVAL_DIR = "start_eval"  # the untrained model's step-0 evaluations, shared by the cells (`PeriodicEval`)

def check_same_config(cell: Cell, config: TrainConfig) -> None:
    saved = Path(config.output_dir) / "config.yaml"
    if saved.exists() and saved.read_text() != dump_config(config):
        raise SdlabError(
            f"{saved}: cell {cell.name} was started with a different recipe than the sweep now gives it; "
            "rerun with --force to start the sweep over, or set output_dir to a new directory"
        )


def final_eval_config(config: TrainConfig, final: FinalEvalConfig) -> EvalConfig:
    """The `sdlab eval` settings of a trained cell's final evaluation, into `<cell>/final_eval`."""
    sources = expand_data_dir(final.sources, config.data_dir) or config.eval.sources
    if not sources:
        raise SdlabError("final_eval: no sources; set final_eval.sources or the recipe's eval.sources")
    return EvalConfig(
        model=str(Path(config.output_dir) / "model"), data=sources, k=final.k, out=str(Path(config.output_dir) / FINAL_EVAL_DIR),
        max_new_tokens=final.max_new_tokens, temperature=final.temperature, top_p=final.top_p, top_k=final.top_k,
        enable_thinking=config.enable_thinking, backend="auto", limit=final.limit, batch_size=final.batch_size, seed=config.seed,
    )


def run_final_eval(config: TrainConfig, final: FinalEvalConfig) -> None:
    from sdlab.evaluation.evaluate import run_eval
    from sdlab.training.args import apply_threads

    apply_threads(config)  # as training did (a rerun may only evaluate)
    eval_config = final_eval_config(config, final)
    run_eval(eval_config, resume=Path(eval_config.out).exists(), force=False)


def find_finished_cell(config: TrainConfig, sources: list[str]) -> tuple[Path, TrainConfig] | None:
    """A finished cell of another sweep that trained this cell's very recipe (its `config.yaml`
    equal but for `output_dir`), and this cell's config as the original ran it; or None."""
    target = Path(config.output_dir).resolve()
    for source in sources:
        for saved in sorted(Path(source).glob("cells/*/config.yaml")):
            original = saved.parent
            if original.resolve() == target or not (original / "summary.json").exists():
                continue
            text = saved.read_text()
            original_dir = (yaml.safe_load(text) or {}).get("output_dir")
            as_original = config.model_copy(update={"output_dir": original_dir}) if isinstance(original_dir, str) else None
            if as_original is not None and text == dump_config(as_original):
                return original, as_original
    return None


def reuse_finished_cell(config: TrainConfig, final: FinalEvalConfig | None, sources: list[str]) -> Path | None:
    """Copy in a finished cell of another sweep with this cell's very recipe instead of training
    it again, with its final evaluation when that ran with this sweep's settings;
    `reused_from.txt` names the original, which is returned (None when no source has one).
    Training is deterministic on one CPU class, so the copy is the run this cell would have been."""
    found = find_finished_cell(config, sources)
    if found is None:
        return None
    original, as_original = found
    evaluated = final is not None and final_eval_complete(original) and (original / FINAL_EVAL_DIR / "config.yaml").read_text() == dump_config(final_eval_config(as_original, final))
    target = Path(config.output_dir)
    staging = target.with_name(f".{target.name}.reusing")
    shutil.rmtree(staging, ignore_errors=True)
    skipped = ["checkpoint-*", REUSED_FILE] + ([] if evaluated else [FINAL_EVAL_DIR])
    shutil.copytree(original, staging, ignore=shutil.ignore_patterns(*skipped))
    atomic_write_text(staging / "config.yaml", dump_config(config))  # versions.json stays the original's
    if evaluated:
        atomic_write_text(staging / FINAL_EVAL_DIR / "config.yaml", dump_config(final_eval_config(config, final)))
    atomic_write_text(staging / REUSED_FILE, f"{original.resolve()}\n")
    shutil.rmtree(target, ignore_errors=True)  # a cell that had not started: at most its header
    staging.rename(target)
    return original


CellCallback = Callable[[int, int, Cell, str], None]  # (index, total, cell, status before running)


def run_sweep(config: SweepConfig, *, force: bool = False, on_cell: CellCallback | None = None, reward_funcs: Any = None) -> dict[str, Any]:
    """Run every unfinished cell in order; returns the collected results (also on disk).
    `reward_funcs` replaces the 0/1 math reward in every cell (as in `run_training`)."""
    from sdlab.training.args import world_size
    from sdlab.training.run import run_training

    distributed = world_size() > 1  # under `accelerate launch`: every process trains every cell
    cells = validate_sweep(config)
    sweep_dir = Path(config.output_dir)
    if force and sweep_dir.exists() and is_main_process():
        shutil.rmtree(sweep_dir)
    for cell, train_config in cells:
        check_same_config(cell, train_config)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    resolved = recorded_sweep(config)

    def record_and_collect() -> dict[str, Any]:
        """Record this part's levels again before every collection (a part started with --force
        may have removed them), then collect what the directory holds."""
        record_levels(resolved, sweep_dir)
        return collect_results(sweep_dir)

    if is_main_process():
        record_levels(resolved, sweep_dir)
    for index, (cell, train_config) in enumerate(cells):
        status = cell_status(Path(train_config.output_dir), needs_final_eval=config.final_eval is not None)
        if status == "start" and config.reuse and is_main_process() and (original := reuse_finished_cell(train_config, config.final_eval, config.reuse)):
            logger.info("sweep %s: cell %s copied from %s (the same recipe, finished)", config.name, cell.name, original)
            status = cell_status(Path(train_config.output_dir), needs_final_eval=config.final_eval is not None)
            if status == "done":
                status = "reused"
        if on_cell:
            on_cell(index, len(cells), cell, status)
        if status in ("start", "resume"):
            logger.info("sweep %s: cell %d/%d %s (%s)", config.name, index + 1, len(cells), cell.name, status)
            # A cell without a checkpoint starts over: rows logged before an interruption would be stale.
            run_training(train_config, resume=status == "resume", force=status == "start", reward_funcs=reward_funcs, start_eval_cache=sweep_dir / START_EVAL_DIR)
        if status not in ("done", "reused") and config.final_eval is not None:
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


def recorded_sweep(config: SweepConfig) -> SweepConfig:
    """The sweep as its directory records it: self-contained (the recipe file folded into
    `base`, so reports need only the directory) and valid alone, whichever part runs first."""
    return config.model_copy(update={"recipe": None, "base": base_recipe(config), "grid": config.recorded_grid()})


def record_levels(resolved: SweepConfig, sweep_dir: Path) -> None:
    """Write the sweep's resolved file with the union of the levels every part records: read,
    merge and write under a file lock, so two parts started at the same moment both count."""
    path = sweep_dir / SWEEP_FILE
    with file_lock(path):
        atomic_write_text(path, dump_config(with_recorded_levels(resolved, path)))


def with_recorded_levels(resolved: SweepConfig, recorded_file: Path) -> SweepConfig:
    """A sweep run in parts into one directory (`grid.method=[grpo]` in one process,
    `grid.method=[sdpo]` in another) records the union of the parts' levels, so that its results
    collect every part and not only the last one started (`reuse` aside, which changes no
    result). Anything else that differs (another sweep, other settings, other axes, a level
    redefined) is recorded as given."""
    if not recorded_file.is_file():
        return resolved
    try:
        recorded = build_config(SweepConfig, read_yaml(recorded_file), source=str(recorded_file))
    except SdlabError:
        return resolved
    if recorded.model_dump(exclude={"grid", "reuse"}) != resolved.model_dump(exclude={"grid", "reuse"}) or list(recorded.grid) != list(resolved.grid):
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

