"""Problem loading: verl-style parquet, JSONL and Hugging Face datasets -> one normalised record.

    from sdlab.core.data import load_problems
    problems = load_problems("../shared/data/math/evaluation/aime24.parquet")
    problems = load_problems("organism:linmod:64")    # the procedural model organism

Two row layouts are understood, whatever the container:
- verl: `prompt` (chat messages), `reward_model.ground_truth`, optional `extra_info`
  (`index`, `solution`), `problem_id`, `data_source`. Each of `prompt`, `reward_model` and
  `extra_info` may be a native struct or a JSON string (both occur in the study's files).
- simple: `question` (or `problem`) and `answer`, optional `solution` and `id`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sdlab import SdlabError
from sdlab.config.sources import hub_offline, require_hub, source_kind
from sdlab.core.problem import Problem
from sdlab.providers import problem_provider

PARQUET_SUFFIXES = (".parquet",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
LAYOUT_HINT = "a verl-style file needs 'prompt' and 'reward_model'; a simple one 'question' (or 'problem') and 'answer'"


class DataError(SdlabError):
    """A problem file or dataset that cannot be read as problems (the message says where and why)."""


# ---------------------------------------------------------------- one row -> Problem


class _RowError(Exception):
    """A problem with one field of one row; the loader adds file and row."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field_name, self.message = field_name, message


def _cell(value: Any, field_name: str, kind: type) -> Any:
    """A struct/list cell as given, or decoded from its JSON string."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise _RowError(field_name, f"not valid JSON ({err.msg} at character {err.pos}): {value[:80]!r}") from None
    if not isinstance(value, kind):
        raise _RowError(field_name, f"expected a {'list of messages' if kind is list else 'mapping'}, got {type(value).__name__}")
    return value


def _normalise_answer(value: Any, field_name: str = "answer") -> str:
    """A ground truth as a non-empty string; numbers are accepted and written canonically."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, tuple, dict)):
        raise _RowError(field_name, f"ground truth must be a string or a number, got {type(value).__name__} {value!r:.60}")
    if isinstance(value, float):
        value = str(int(value)) if value.is_integer() else repr(value)
    elif isinstance(value, int):
        value = str(value)
    elif not isinstance(value, str):
        raise _RowError(field_name, f"ground truth must be a string or a number, got {type(value).__name__}")
    value = value.strip()
    if not value:
        raise _RowError(field_name, "empty ground truth; every problem needs an answer to grade against")
    return value


def _messages(raw: list[Any]) -> tuple[dict[str, str], ...]:
    messages = []
    for position, message in enumerate(raw):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or not isinstance(message.get("content"), str):
            raise _RowError(f"prompt[{position}]", "each message needs string 'role' and 'content'")
        messages.append({"role": message["role"], "content": message["content"]})
    if not any(message["role"] == "user" for message in messages):
        raise _RowError("prompt", "no user message (the question is the last message with role 'user')")
    return tuple(messages)


def _verl_problem(row: dict[str, Any], index: int, source: str) -> Problem:
    messages = _messages(_cell(row["prompt"], "prompt", list))
    reward = _cell(row["reward_model"], "reward_model", dict)
    if "ground_truth" not in reward:
        raise _RowError("reward_model.ground_truth", "missing")
    answer = _normalise_answer(reward["ground_truth"], "reward_model.ground_truth")
    extra = row.get("extra_info")
    extra = {} if extra is None else _cell(extra, "extra_info", dict)
    problem_id = row.get("problem_id")
    if problem_id is None:
        problem_id = extra.get("index", index)
    solution = extra.get("solution")
    # Scalar extra_info fields (raw_problem, split, ...) travel along; the solution has its own field.
    meta = {key: value for key, value in extra.items() if key != "solution" and isinstance(value, (str, int, float))}
    meta.update(row=index, data_source=row.get("data_source"), style=reward.get("style"))
    return Problem(
        id=str(problem_id),
        question=next(m["content"] for m in reversed(messages) if m["role"] == "user"),
        answer=answer,
        messages=messages,
        solution=solution if isinstance(solution, str) and solution.strip() else None,
        source=source,
        meta={key: value for key, value in meta.items() if value is not None},
    )


def _simple_problem(row: dict[str, Any], index: int, source: str) -> Problem:
    question_field = "question" if "question" in row else "problem"
    question = row[question_field]
    if not isinstance(question, str) or not question.strip():
        raise _RowError(question_field, "question must be a non-empty string")
    solution = row.get("solution")
    problem_id = row.get("id")
    return Problem.from_question(
        str(index if problem_id is None else problem_id),
        question,
        _normalise_answer(row["answer"], "answer"),
        solution=solution if isinstance(solution, str) and solution.strip() else None,
        source=source,
        meta={"row": index},
    )


def _missing_columns(columns: set[str] | dict[str, Any]) -> list[str]:
    if "prompt" in columns or "reward_model" in columns:
        return [name for name in ("prompt", "reward_model") if name not in columns]
    if "question" in columns or "problem" in columns:
        return [] if "answer" in columns else ["answer"]
    return ["question"] if "answer" in columns else ["prompt", "reward_model"]


def _problem(row: dict[str, Any], index: int, source: str) -> Problem:
    return (_verl_problem if "prompt" in row else _simple_problem)(row, index, source)


def _convert(rows: Iterator[tuple[int, str, dict[str, Any]]], where: str, source: str, limit: int | None) -> list[Problem]:
    """Rows -> problems; `rows` yields (0-based row, how to name that row, row)."""
    problems: list[Problem] = []
    for index, label, row in rows:
        if limit is not None and len(problems) >= limit:
            break
        missing = _missing_columns(row)
        if missing:
            raise DataError(f"{where}: {label}: missing field {missing[0]!r} (has {sorted(row)}); {LAYOUT_HINT}")
        try:
            problems.append(_problem(row, index, source))
        except _RowError as err:
            raise DataError(f"{where}: {label}, field {err.field_name!r}: {err.message}; fix or drop that row") from None
    if not problems and limit != 0:
        raise DataError(f"{where}: no problems in it (empty); point to a file with at least one row")
    return problems


# ---------------------------------------------------------------- containers


def _parquet_rows(path: Path) -> Iterator[tuple[int, str, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for unreadable files
        raise DataError(f"{path}: cannot read it as parquet ({err}); check the file is a complete parquet file") from None
    missing = _missing_columns(set(table.column_names))
    if missing and table.num_rows:
        raise DataError(f"{path}: missing column {missing[0]!r} (has {table.column_names}); {LAYOUT_HINT}")
    for index, row in enumerate(table.to_pylist()):
        yield index, f"row {index} (0-based)", row


def _jsonl_rows(path: Path) -> Iterator[tuple[int, str, dict[str, Any]]]:
    index = 0
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            label = f"row {index} (0-based; line {line_number})"
            try:
                line = raw.decode("utf-8-sig" if line_number == 1 else "utf-8")  # a leading byte-order mark is harmless
            except UnicodeDecodeError as err:
                raise DataError(f"{path}: {label}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1}); save the file as UTF-8") from None
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: {label}: not valid JSON ({err.msg} at column {err.colno}); each line must be one JSON object") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}: {label}: expected a JSON object, got {type(row).__name__}; each line must be one JSON object")
            yield index, label, row
            index += 1


def _dataset_rows(dataset: Any) -> Iterator[tuple[int, str, dict[str, Any]]]:
    for index, row in enumerate(dataset):
        yield index, f"row {index} (0-based)", row


def _load_from_disk(path: Path, split: str, limit: int | None) -> Any:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as err:  # noqa: BLE001 - FileNotFoundError, ValueError, ... for foreign directories
        raise DataError(f"{path}: a directory, but not one saved with datasets' save_to_disk ({err}); point to a .parquet/.jsonl file or a saved dataset") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(f"{path}: no split {split!r} in this saved dataset (has {sorted(loaded)}); pass one of those as the split")
        loaded = loaded[split]
    return loaded.select(range(min(limit, len(loaded)))) if limit is not None else loaded


def _load_from_hub(name: str, split: str, limit: int | None) -> Any:
    import datasets

    try:
        loaded = datasets.load_dataset(name, split=split)
    except Exception as err:  # noqa: BLE001 - connection, not-found and split errors all mean "cannot use it"
        offline = " (HF_HUB_OFFLINE is set)" if hub_offline() else ""
        raise DataError(
            f"{name}: not a local file or directory, and loading it as a Hugging Face hub dataset (split {split!r}) failed{offline}: "
            f"{type(err).__name__}: {str(err)[:200]}; check the path, or the dataset id, split and network access"
        ) from None
    return loaded.select(range(min(limit, len(loaded)))) if limit is not None else loaded


def load_problems(source: str | Path, *, limit: int | None = None, split: str = "train") -> list[Problem]:
    """Problems from a verl parquet or JSONL file, a `save_to_disk` directory, a hub dataset id
    or a provider's spec (`organism:linmod:64`); at most `limit` of them, in file order."""
    if limit is not None and limit < 0:
        raise DataError(f"{source}: limit must be at least 0, got {limit}")
    spec = str(source)
    provider = problem_provider(spec)
    if provider is not None:
        problems = provider.load_problems(spec)
        return problems if limit is None else problems[:limit]
    path = Path(spec).expanduser()
    if path.is_dir():
        return _convert(_dataset_rows(_load_from_disk(path, split, limit)), str(path), path.name, limit)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in PARQUET_SUFFIXES:
            return _convert(_parquet_rows(path), str(path), path.stem, limit)
        if suffix in JSONL_SUFFIXES:
            return _convert(_jsonl_rows(path), str(path), path.stem, limit)
        raise DataError(f"{path}: unknown extension {path.suffix!r}; problems load from .parquet, .jsonl, a save_to_disk directory, a hub dataset id or organism:...")
    if source_kind(spec) == "missing":
        raise DataError(f"{path}: no such file or directory; check the path (relative paths start from {Path.cwd()})")
    require_hub(spec, "file or directory")
    dataset = _load_from_hub(spec, split, limit)
    return _convert(_dataset_rows(dataset), spec, spec.rsplit("/", 1)[-1], limit)


def dataset_name(source: str | Path) -> str:
    """`.../aime24.parquet` -> `aime24`; other specs are made file-name safe."""
    text = str(source)
    name = Path(text).stem if Path(text).suffix else text
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "data"
