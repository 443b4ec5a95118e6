"""`sdlab sweep` and `sdlab demo`: many runs with matched settings, and the whole story in one command."""

from __future__ import annotations

from pathlib import Path

import typer

from sdlab.cli.common import console, progress_columns, quiet_library_logs, stdout_console


def sweep(
    sweep_file: Path = typer.Argument(..., help="A sweep file (recipes/sweeps/*.yaml): base recipe + grid."),
    overrides: list[str] = typer.Argument(None, help="key=value: sweep keys (output_dir=..., final_eval.k=4) or recipe keys for every cell (steps=2)."),
    force: bool = typer.Option(False, "--force", help="Delete the sweep directory and run every cell again."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the cells and validate every recipe; run nothing."),
) -> None:
    """Run a grid of training runs with matched data, batch, rollout budget and evaluation; resumable.
    Writes cells/<cell>/ (one `sdlab train` run each), results.csv, aggregate.csv (mean, 95% CI over seeds), results.json."""
    from rich.progress import Progress

    from sdlab.experiments.grid import load_sweep, validate_sweep, varied_keys
    from sdlab.experiments.sweep import run_sweep

    config = load_sweep(sweep_file, overrides or [])
    cells = validate_sweep(config)
    print(f"{sweep_file}: {len(cells)} cells over {', '.join(config.grid)}; varied keys: {', '.join(sorted(varied_keys([c for _, c in cells]) - {'output_dir'})) or 'none'}")
    if dry_run:
        for cell, train_config in cells:
            print(f"  {cell.name}\t{train_config.output_dir}")
        return
    with Progress(*progress_columns("cells"), console=console) as progress:
        task = progress.add_task(config.name, total=len(cells))

        def on_cell(index: int, total: int, cell, status: str) -> None:
            progress.update(task, completed=index, description=f"{config.name}: {cell.name} ({status})")

        results = run_sweep(config, force=force, on_cell=on_cell)
        progress.update(task, completed=len(cells), description=config.name)
    print_aggregate(results)
    print_selection(results)
    print(f"{config.output_dir}: results.csv, aggregate.csv, results.json")


def print_selection(results: dict) -> None:
    """The sweep's fixed selection rule applied: each group's chosen level and every level's score."""
    from sdlab.report.tables import chosen_label

    for choice in results.get("selection") or []:
        select = results["select"]
        group = ", ".join(f"{key}={choice[key]}" for key in select["per"])
        scores = ", ".join(f"{level:g}: {'-' if score is None else f'{score:.3f}'}" for level, score in choice["scores"].items())
        print(f"{group}: chosen {select['axis']} = {chosen_label(choice, select['axis'])} (highest {choice['metric']}, ties to the smaller; {scores})")


def print_aggregate(results: dict) -> None:
    from rich.table import Table

    # the rollouts' accuracy and not their reward: a fraction under any reward function
    headers = {"train_accuracy": "rollout accuracy", "train_response_tokens_mean": "tokens", "train_markers_per_response": "markers", "id_avg@k": "ID avg@k", "ood_avg@k": "OOD avg@k"}
    columns = [c for c in headers if any(f"{c}_mean" in row for row in results["aggregate"])]
    group_by = [axis for axis in results["axes"] if axis not in results["aggregate_over"]]
    table = Table(title=f"{results['name']}: final values, mean [95% CI] over {', '.join(results['aggregate_over'])}")
    for column in (*group_by, "finished", *(headers[c] for c in columns)):
        table.add_column(column)
    for row in results["aggregate"]:
        cells = []
        for column in columns:
            mean, low, high = row.get(f"{column}_mean"), row.get(f"{column}_ci_low"), row.get(f"{column}_ci_high")
            cells.append("" if mean is None else f"{mean:.3g}" + (f" [{low:.3g}, {high:.3g}]" if low is not None else ""))
        table.add_row(*(str(row.get(axis, "")) for axis in group_by), f"{row['finished']}/{row['n']}", *cells)
    stdout_console().print(table)


def demo(
    overrides: list[str] = typer.Argument(None, help="key=value overrides of the demo recipe, e.g. out=runs/demo2 seed=1"),
    recipe: Path = typer.Option(None, "--recipe", help="Demo recipe (default: recipes/demo.yaml)."),
    force: bool = typer.Option(False, "--force", help="Start the demo directory over instead of resuming it."),
) -> None:
    """The main job on the shipped organism: probe contexts, train GRPO and SDPO at equal budget,
    evaluate in and out of distribution, and write one HTML report. Rerun to resume."""
    from sdlab.experiments.demo import load_demo_config, run_demo

    quiet_library_logs()  # the demo's own stage lines are its progress
    config = load_demo_config(recipe, overrides or [])
    report_path = run_demo(config, force=force, say=lambda text: console.print(f"[bold cyan]demo[/] {text}", highlight=False))
    print(f"report: {report_path}")
