"""`sdlab train`, `sdlab validate`, `sdlab sft-data`: one recipe -> one run directory."""

from __future__ import annotations

from pathlib import Path

import typer

from sdlab.cli.common import Backend, SftMode
from sdlab.config.schema import SftCollectConfig

COLLECT = {name: field.default for name, field in SftCollectConfig.model_fields.items()}  # the schema's (a recipe's sft.collect), shown in --help


def train(
    recipe: Path = typer.Argument(..., help="A training recipe (recipes/organism/*.yaml, recipes/models/*/*.yaml)."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. steps=10 sdpo.alpha=1.0 output_dir=runs/x"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in output_dir from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Delete an existing output_dir and start over."),
    show_teacher: int = typer.Option(None, "--show-teacher", help="Print the first N SDPO teacher inputs (audit)."),
) -> None:
    """Train with GRPO, SDPO or SFT; writes metrics, samples, checkpoints and summary.json to output_dir."""
    from sdlab.config.checks import load_train_config
    from sdlab.training.run import run_training

    config = load_train_config(recipe, overrides or [])
    summary = run_training(config, resume=resume, force=force, show_teacher=show_teacher, on_teacher_audit=print if show_teacher else None)
    final = summary.get("final") or {}
    shown = {k: final[k] for k in ("reward_mean", "response_tokens_mean", "markers_per_response", "loss") if final.get(k) is not None}
    print(f"{config.output_dir}: {summary['steps']} steps in {summary['wall_time_s']:.0f} s; final {shown}")


def validate(
    recipe: Path = typer.Argument(..., help="A training recipe to check without running it."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides to check with it."),
) -> None:
    """Check a training recipe without running anything: schema, data files and provider specs (organism:...), model path, and combinations the trainers refuse (GRPO/SDPO with one rollout)."""
    from sdlab.config.checks import load_train_config

    config = load_train_config(recipe, overrides or [])
    shape = "" if config.method == "sft" else f", {config.batch} prompts x {config.rollouts} rollouts, {config.updates_per_step} update(s)/step"
    print(f"{recipe}: ok ({config.method}, model {config.model}, {config.steps} steps{shape}, output {config.output_dir})")


def sft_data(
    model: str = typer.Option(..., "--model", help="Model dir, hub id or `organism`."),
    data: str = typer.Option(..., "--data", help="Problem source: parquet/JSONL path, datasets dir or an organism spec (organism:linmod:512)."),
    mode: SftMode = typer.Option(SftMode.unguided, "--mode", help="unguided (D_ug: the conditioning solution itself) or guided (D_sg: first correct response with that solution in context, dropped for training)."),
    n_correct: int = typer.Option(COLLECT["n_correct"], "--n-correct", min=1, help="Correct traces to collect (one per problem)."),
    out: Path = typer.Option(..., "--out", help="Output chat JSONL; an existing file is resumed."),
    max_attempts: int = typer.Option(COLLECT["max_attempts"], "--max-attempts", min=1, help="Samples per problem before giving up on it."),
    max_new_tokens: int = typer.Option(COLLECT["max_new_tokens"], "--max-new-tokens", min=1),
    temperature: float = typer.Option(COLLECT["temperature"], "--temperature", min=0.0),
    backend: Backend = typer.Option(Backend.auto, "--backend", help="auto: vLLM when installed and a GPU is present."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Collect correct traces for off-policy SFT (the study's D_ug / D_sg)."""
    from sdlab.providers import resolve_model
    from sdlab.training.sft import collect_sft_data

    count = collect_sft_data(
        model=resolve_model(model), data=data, mode=mode.value, n_correct=n_correct, out=out,
        max_attempts=max_attempts, max_new_tokens=max_new_tokens, temperature=temperature, backend=backend.value, seed=seed,
    )
    print(f"{out}: {count} correct {mode.value} traces")
