"""`sdlab eval`: k samples per problem, avg@k (95% CI), pass@k, length and markers."""

from __future__ import annotations

from pathlib import Path

import typer

from sdlab.cli.common import Backend, console, progress_columns, stdout_console
from sdlab.config.schema import EvalConfig

DEFAULTS = {name: field.default for name, field in EvalConfig.model_fields.items()}  # the schema's, shown in --help

def eval_command(
    model: str = typer.Option(..., "--model", help="Model directory, hub id (loaded without remote code) or `organism` (the shipped model organism)."),
    data: list[str] = typer.Option(..., "--data", help="Problem file (verl parquet, JSONL) or data set spec; repeat for several."),
    k: int = typer.Option(DEFAULTS["k"], "--k", min=1, help="Samples per problem: avg@k and pass@k."),
    out: Path = typer.Option(..., "--out", help="Run directory for config.yaml, metrics.json and samples_<dataset>.jsonl."),
    max_new_tokens: int = typer.Option(DEFAULTS["max_new_tokens"], "--max-new-tokens", min=1, help="Longest reply; longer ones are cut and count as truncated."),
    temperature: float = typer.Option(DEFAULTS["temperature"], "--temperature", min=0.0, help="Sampling temperature; 0 is greedy."),
    top_p: float = typer.Option(DEFAULTS["top_p"], "--top-p", min=0.0, max=1.0, help="Nucleus sampling mass (1 switches it off)."),
    top_k: int = typer.Option(DEFAULTS["top_k"], "--top-k", min=0, help="Top-k filter (0 switches it off)."),
    thinking: bool = typer.Option(None, "--thinking/--no-thinking", help="Pass enable_thinking to the chat template (Qwen3); default: the template's own default."),
    backend: Backend = typer.Option(Backend.auto, "--backend", help="auto: vLLM when installed and a GPU is present."),
    limit: int = typer.Option(None, "--limit", min=1, help="Evaluate only the first N problems of each data set."),
    batch_size: int = typer.Option(DEFAULTS["batch_size"], "--batch-size", min=1, help="Prompts per generation call (each with k samples); lower it if memory runs out."),
    seed: int = typer.Option(DEFAULTS["seed"], "--seed", help="Sampling seed."),
    force: bool = typer.Option(False, "--force", help="Delete an existing --out directory and start over."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out, skipping finished problems."),
) -> None:
    """Sample k replies per problem and report avg@k (95% CI), pass@k, reply length and epistemic markers."""
    from rich.progress import Progress
    from rich.table import Table

    from sdlab.config import build_config
    from sdlab.evaluation.evaluate import run_eval
    from sdlab.providers import resolve_model

    model = resolve_model(model)
    config = build_config(EvalConfig, dict(
        model=model, data=data, k=k, out=str(out), max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
        enable_thinking=thinking, backend=backend.value, limit=limit, batch_size=batch_size, seed=seed,
    ), source="sdlab eval options")
    with Progress(*progress_columns("problems"), console=console) as progress:
        tasks: dict[str, int] = {}

        def on_progress(dataset: str, done: int, total: int) -> None:
            if dataset not in tasks:
                tasks[dataset] = progress.add_task(dataset, total=total)
            progress.update(tasks[dataset], completed=done)

        metrics = run_eval(config, force=force, resume=resume, on_progress=on_progress)
    table = Table(title=f"{model}: {k} samples per problem")
    for column in ("dataset", f"avg@{k} (95% CI)", f"pass@{k}", "tokens", "markers", "truncated"):
        table.add_column(column, justify="left" if column == "dataset" else "right")
    for name, m in metrics.items():
        ci = f" [{m['avg@k_ci95'][0]:.3f}, {m['avg@k_ci95'][1]:.3f}]" if m["avg@k_ci95"] else ""
        table.add_row(name, f"{m['avg@k']:.3f}{ci}", f"{m['pass@k']:.3f}", f"{m['mean_response_tokens']:.0f}", f"{m['mean_markers_paper']:.1f}", f"{m['truncated_fraction']:.0%}")
    stdout_console().print(table)
    print(f"{out}/metrics.json")
