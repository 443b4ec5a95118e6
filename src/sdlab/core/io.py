"""Run directories: every command writes to its own folder and never overwrites one silently.

Layout: `config.yaml` (resolved), `versions.json` (library versions), `metrics.jsonl`
(one JSON object per line, appended and flushed so nothing is lost on interruption),
plus whatever the command adds (samples, checkpoints, report).
"""

from __future__ import annotations

import json
import platform
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sdlab import SdlabError
from sdlab.config import dump_config

TRACKED_PACKAGES = ("sdlab", "torch", "transformers", "trl", "accelerate", "datasets", "math-verify", "vllm")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def prepare_run_dir(path: str | Path, *, force: bool = False, resume: bool = False) -> Path:
    """Create `path` for a new run. An existing non-empty directory is an error unless
    `force` (wipe it) or `resume` (keep it and continue)."""
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        if force:
            shutil.rmtree(path)
        elif not resume:
            raise SdlabError(f"{path}: run directory exists and is not empty; pass --force to overwrite it or --resume to continue it")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_run_header(path: Path, config: BaseModel) -> None:
    (path / "config.yaml").write_text(dump_config(config))
    (path / "versions.json").write_text(json.dumps(library_versions(), indent=2) + "\n")


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record, default=float) + "\n")
        handle.flush()


MODEL_FILE = "model_build.json"  # a run's record of the organism build it started from


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from `path`, or {} when the file does not exist yet."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {}


def write_json(path: str | Path, data: Any) -> None:
    """Write atomically (temp file + rename) so an interrupted write never leaves half a file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float) + "\n")
    tmp.replace(path)
