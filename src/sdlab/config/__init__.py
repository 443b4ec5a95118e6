"""Typed configs for every command, loaded from YAML recipes with `key=value` overrides.

Each command has one pydantic model (extra keys forbidden). `load_config` reads a recipe
with `yaml.safe_load`, applies dotted overrides (`train.lr=1e-5`), validates, and turns
pydantic's errors into one message that names the key path and the allowed values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from sdlab import SdlabError

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for all configs: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=1e-5` -> (["a", "b"], 1e-05); the value is parsed as YAML so types survive."""
    if "=" not in text:
        raise SdlabError(f"override {text!r} is not key=value (example: lr=1e-5)")
    key, raw = text.split("=", 1)
    if not key:
        raise SdlabError(f"override {text!r} has an empty key")
    return key.split("."), yaml.safe_load(raw) if raw != "" else ""


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for override in overrides:
        path, value = parse_override(override)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SdlabError(f"override {override!r}: {part!r} is not a section")
        node[path[-1]] = value
    return data


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid config"]
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling; `sdlab validate` lists the schema)"
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def build_config(model_cls: type[ConfigT], data: dict[str, Any], source: str = "config") -> ConfigT:
    try:
        return model_cls.model_validate(data)
    except ValidationError as err:
        raise SdlabError(format_validation_error(err, source)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SdlabError(f"{path}: recipe not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SdlabError(f"{path}: not valid YAML ({err})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SdlabError(f"{path}: a recipe must be a mapping of keys to values")
    return data


def load_config(model_cls: type[ConfigT], path: str | Path | None, overrides: list[str] | None = None) -> ConfigT:
    """Recipe file (optional) + overrides -> validated config."""
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    return build_config(model_cls, data, source=str(path) if path else "overrides")


def dump_config(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
