"""Where problems and models that are not files come from: one registry of providers.

A provider owns a spec prefix (`PREFIX:...` problem specs) and a model name, and answers for
the model directories it built. Generic code (data loading, training, reports, the demo)
asks this registry and never imports a provider, so a provider plugs in without being named
anywhere else. sdlab ships one (the model organism); others register through the
`sdlab.providers` entry-point group, each entry point naming a `Provider` instance.

    load_problems("organism:linmod:64")     -> problem_provider(spec).load_problems(spec)
    resolve_model("organism")               -> the provider's model directory (shipped, or built on demand)
    resolve_model("organism:seed=1")        -> the same with build options (another build, by name)
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from sdlab import SdlabError

if TYPE_CHECKING:
    from sdlab.core.problem import Problem

ENTRY_POINT_GROUP = "sdlab.providers"
BUILTIN = ("sdlab.organism.provider:PROVIDER",)  # the model organism ships with sdlab
DEFAULT_MODEL = "organism"  # the model a recipe without `model:` trains: the shipped organism


class Provider(Protocol):
    """Problems by spec and a model by name, plus what a built model records about itself."""

    name: str  # the model name (`model: NAME`) and the problem-spec prefix (`NAME:...`)
    model_options: tuple[str, ...]  # the build options a model name may carry (`NAME:seed=1`)

    def load_problems(self, spec: str) -> list[Problem]:
        """Problems of a `NAME:...` spec; SdlabError naming the spec when it is invalid."""

    def check_spec(self, spec: str) -> None:
        """Raise SdlabError when `spec` is not a valid problem spec, without building anything."""

    def model_dir(self, **options: Any) -> Path:
        """The provider's model directory, built (or reused) with `options`."""

    def build_record(self, model_dir: str | Path) -> dict[str, Any]:
        """What identifies the build in `model_dir` ({} when it did not build it): a run records
        it and refuses to resume on another build."""

    def trained_window(self, model_dir: str | Path) -> int | None:
        """The longest sequence the model in `model_dir` was trained on, when known."""

    def missing_abilities(self, model_dir: str | Path) -> list[str]:
        """Abilities the experiments rely on that the model in `model_dir` was judged to lack."""


def _load(target: str) -> Provider:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


@cache
def providers() -> dict[str, Provider]:
    """Every registered provider by name (the shipped ones, then entry points)."""
    found = [_load(target) for target in BUILTIN] + [point.load() for point in entry_points(group=ENTRY_POINT_GROUP)]
    return {provider.name: provider for provider in found}


def problem_provider(spec: str) -> Provider | None:
    """The provider of a `NAME:...` problem spec, or None for paths and hub dataset ids."""
    prefix, colon, _ = spec.partition(":")
    return providers().get(prefix) if colon else None


def model_provider(spec: str) -> Provider | None:
    """The provider of a model name such as `organism` or `organism:seed=1`, or None for paths and hub ids."""
    return providers().get(spec.partition(":")[0])


def model_options(spec: str) -> dict[str, Any]:
    """`organism:seed=1,size=small` -> {"seed": 1, "size": "small"}: build options carried by a
    provider's model name, so a recipe or sweep names another build without a machine's path.
    SdlabError names a malformed or unknown option."""
    provider = model_provider(spec)
    _, colon, text = spec.partition(":")
    if provider is None or not colon:
        return {}
    options = {}
    for item in text.split(","):
        key, equals, value = (part.strip() for part in item.partition("="))
        if not equals or not key or not value:
            raise SdlabError(f"model {spec!r}: options are key=value separated by commas (e.g. {provider.name}:seed=1)")
        allowed = getattr(provider, "model_options", ())  # a provider written before options existed takes none
        if key not in allowed:
            raise SdlabError(f"model {spec!r}: unknown option {key!r}; {provider.name} takes {', '.join(allowed) or 'no options'}")
        options[key] = yaml.safe_load(value)
    return options


def resolve_model(spec: str, **options: Any) -> str:
    """A provider's model name -> its directory (built once, then cached); anything else as given.
    Options in the name (`organism:seed=1`) win over the caller's defaults."""
    provider = model_provider(spec)
    return str(provider.model_dir(**(options | model_options(spec)))) if provider is not None else spec


def build_record(model_dir: str | Path) -> dict[str, Any]:
    return next((record for provider in providers().values() if (record := provider.build_record(model_dir))), {})


def trained_window(model_dir: str | Path) -> int | None:
    return next((window for provider in providers().values() if (window := provider.trained_window(model_dir))), None)


def missing_abilities(model_dir: str | Path) -> list[str]:
    return [ability for provider in providers().values() for ability in provider.missing_abilities(model_dir)]
