"""Run directories: every command writes to its own folder and never overwrites one silently.

Layout: `config.yaml` (resolved), `versions.json` (library versions), `metrics.jsonl`
(one JSON object per line, appended and flushed so nothing is lost on interruption),
plus whatever the command adds (samples, checkpoints, report).
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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


@contextmanager
def run_dir_setup(path: str | Path, *, force: bool = False, resume: bool = False) -> Iterator[Path]:
    """`prepare_run_dir` around a command's set-up (loading data and model, building the
    trainer): when the set-up is refused for bad input (SdlabError) in a directory this call
    created, the directory goes again, so the corrected command is not refused for it."""
    path = Path(path)
    created = not (path.exists() and any(path.iterdir()))
    run_dir = prepare_run_dir(path, force=force, resume=resume)
    try:
        yield run_dir
    except SdlabError:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def write_run_header(path: Path, config: BaseModel) -> None:
    atomic_write_text(path / "config.yaml", dump_config(config))
    write_json(path / "versions.json", library_versions())


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


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`: a reader (or
    an interruption) sees the old file or the new one, never half of one. The temporary name
    is unique, so two processes writing one file never write into each other's. The file gets
    the mode an ordinary `open` would give it (a temporary file is private to its owner)."""
    path = Path(path)
    handle = tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            handle.write(text)
        os.chmod(handle.name, 0o666 & ~_UMASK)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _read_umask() -> int:
    current = os.umask(0)  # reading the umask means setting it: done once, at import
    os.umask(current)
    return current


_UMASK = _read_umask()


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=float) + "\n")


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Replace `path` with `records`, one JSON object per line (atomically)."""
    atomic_write_text(path, "".join(json.dumps(record, default=float) + "\n" for record in records))


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (through `path.lock`, fcntl) while several processes
    read, change and rewrite one shared file, so that no update is lost between a read and a
    write. Advisory: only writers that take it are ordered."""
    lock_path = Path(path).with_name(Path(path).name + ".lock")
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
