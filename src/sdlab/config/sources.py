"""One rule for what a model or data string names: a provider's name or spec
(`organism`, `organism:linmod:64`), a local path, or a Hugging Face hub id; and one check that
the hub can answer before anything waits on it.

A string that exists on disk is local. One that looks like a path (starts with `.`, `/` or
`~`, ends in a file suffix, has more than one `/`) but does not exist is a missing file, never
a hub id. Anything else that is `name` or `owner/name` is a hub id.
"""

from __future__ import annotations

import re
import socket
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from sdlab import SdlabError
from sdlab.providers import model_provider, problem_provider

PATH_SUFFIXES = (".parquet", ".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".txt", ".arrow", ".gz", ".safetensors", ".bin")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
HUB_TIMEOUT_S = 3.0
DATA_DIR = "{data_dir}"  # the placeholder recipes write data paths with

SourceKind = Literal["provider", "local", "missing", "hub"]


def source_kind(spec: str | Path, *, model: bool = False) -> SourceKind:
    """What `spec` names (a model name when `model`, else a problem source)."""
    text = str(spec)
    if not isinstance(spec, Path) and (model_provider(text) if model else problem_provider(text)) is not None:
        return "provider"
    if Path(text).expanduser().exists():
        return "local"
    if isinstance(spec, Path) or text.startswith((".", "/", "~")) or text.lower().endswith(PATH_SUFFIXES) or text.count("/") > 1 or not HUB_ID.match(text):
        return "missing"
    return "hub"


def expand_data_dir(value: Any, data_dir: str | None) -> Any:
    """Replace `{data_dir}` in every string of a nested value by `data_dir`: recipes name the
    study's data files relative to one setting, so a copy of the data elsewhere (or the data
    beside a checkout, `../shared/data`) is one override away (`data_dir=/data/study`)."""
    if isinstance(value, str):
        if DATA_DIR in value and data_dir is None:
            raise ValueError(f"{value!r} uses {DATA_DIR} but data_dir is not set; set data_dir (e.g. data_dir=../shared/data)")
        return value.replace(DATA_DIR, data_dir) if data_dir is not None else value
    if isinstance(value, dict):
        return {key: expand_data_dir(item, data_dir) for key, item in value.items()}
    if isinstance(value, list):
        return [expand_data_dir(item, data_dir) for item in value]
    return value


def hub_offline() -> bool:
    """HF_HUB_OFFLINE is set: the libraries look in their local caches only and fail at once."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@cache
def hub_unreachable_reason(endpoint: str) -> str | None:
    """Why the hub endpoint cannot be reached (name lookup or connection), or None when it can.
    Checked once per process, in seconds, instead of the libraries' retries (about a minute)."""
    url = urlparse(endpoint)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=HUB_TIMEOUT_S):
            return None
    except OSError as err:
        return f"{type(err).__name__}: {err}"


def require_hub(name: str, what: str) -> None:
    """Fail at once, naming `name`, when a hub id would be fetched from a hub that cannot answer."""
    from huggingface_hub import constants

    if hub_offline():
        return
    reason = hub_unreachable_reason(constants.ENDPOINT)
    if reason is not None:
        raise SdlabError(
            f"{name}: not a local {what}, and the Hugging Face hub ({constants.ENDPOINT}) cannot be reached ({reason}); "
            f"give a local path (relative paths start from {Path.cwd()}), or set HF_HUB_OFFLINE=1 to use a copy in the local cache"
        )
