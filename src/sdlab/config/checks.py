"""What a recipe's schema cannot say, checked before any work: files and model directories that
exist, provider specs that parse, and combinations the trainers refuse.

    sdlab validate recipes/organism/sdpo_solution.yaml steps=5
"""

from __future__ import annotations

from pathlib import Path

from sdlab import SdlabError
from sdlab.config import load_config
from sdlab.config.schema import TrainConfig
from sdlab.config.sources import source_kind
from sdlab.providers import model_options, problem_provider


def load_train_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Recipe + `key=value` overrides -> validated config, with file paths checked."""
    config = load_config(TrainConfig, path, overrides)
    check_paths(config, source=str(path) if path else "overrides")
    return config


def check_source(spec: str, key: str, source: str, *, model: bool = False) -> None:
    """A model or data string names something that exists: a local path, a provider spec that
    parses (`organism:linmod:64`), or a hub id (checked when it loads)."""
    kind = source_kind(spec, model=model)
    if kind == "missing":
        raise SdlabError(f"{source}: {key}: {spec!r} not found (paths are relative to the directory you run sdlab from: {Path.cwd()})")
    if kind != "provider":
        return
    try:
        if model:
            model_options(spec)
        else:
            problem_provider(spec).check_spec(spec)
    except SdlabError as err:
        raise SdlabError(f"{source}: {key}: {err}") from None


def check_paths(config: TrainConfig, *, source: str = "config") -> None:
    """Fail before any work when a data file or local model directory is missing or a provider
    spec is invalid. Hub ids (`org/name`) pass: they can only be checked by downloading."""
    check_source(config.model, "model", source, model=True)
    if config.data is not None:
        check_source(config.data.train, "data.train", source)
    for index, spec in enumerate(config.eval.sources):
        check_source(spec, f"eval.sources.{index}", source)
    if config.sft is not None and config.sft.collect is not None:
        check_source(config.sft.collect.data, "sft.collect.data", source)
    elif config.sft is not None and not Path(config.sft.dataset).is_file():
        raise SdlabError(f"{source}: sft.dataset: {config.sft.dataset!r} not found; collect it first with `sdlab sft-data ... --out {config.sft.dataset}`")
