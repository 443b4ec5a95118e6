"""Evaluation as the study does it: k samples per problem, avg@k and pass@k, response length
and epistemic markers, averaged per problem first and then over problems.

    sdlab eval --model runs/organism/model --data ../shared/data/math/evaluation/aime24.parquet --k 16 --out runs/eval

Writes `metrics.json` ({dataset: metrics}) and `samples_<dataset>.jsonl` (one line per
sample, appended as each batch of problems finishes, so an interruption loses at most one
batch and `resume=True` skips the problems already complete).
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from statistics import fmean
from typing import Any

import yaml

from sdlab import SdlabError
from sdlab.config.schema import EvalConfig
from sdlab.core.data import dataset_name, load_problems
from sdlab.core.epistemic import count_markers
from sdlab.core.grading import extract_answer, grade_many
from sdlab.core.io import append_jsonl, run_dir_setup, write_json, write_jsonl, write_run_header
from sdlab.core.problem import Problem
from sdlab.core.stats import FRACTION, mean_and_ci95, pass_at_k, problem_mean
from sdlab.evaluation.generation import Completion, Generator, SamplingParams, check_model_source, make_generator

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]  # (dataset, problems done, problems in total)

# Keys that may change when a run is resumed: they do not change what a finished sample is.
RESUMABLE_KEYS = {"data", "limit", "batch_size", "backend", "out"}


# ---------------------------------------------------------------- metrics of one data set


def summarize(samples_per_problem: Sequence[Sequence[dict[str, Any]]], k: int) -> dict[str, Any]:
    """Metrics of one data set from its sample records (each with correct, num_tokens,
    finished, markers_paper, markers_word). Fractions in [0, 1]."""
    counts = [sum(bool(s["correct"]) for s in samples) for samples in samples_per_problem]
    avg, low, high = mean_and_ci95([c / k for c in counts], within=FRACTION)
    curve = [fmean(pass_at_k(k, c, j) for c in counts) for j in range(1, k + 1)]
    all_samples = [s for samples in samples_per_problem for s in samples]
    return {
        "avg@k": avg,
        "avg@k_ci95": None if math.isnan(low) else [low, high],
        "pass@k": curve[-1],
        "pass_curve": curve,
        "mean_response_tokens": problem_mean([[s["num_tokens"] for s in samples] for samples in samples_per_problem]),
        "mean_markers_paper": problem_mean([[s["markers_paper"] for s in samples] for samples in samples_per_problem]),
        "mean_markers_word": problem_mean([[s["markers_word"] for s in samples] for samples in samples_per_problem]),
        "truncated_fraction": fmean(not s["finished"] for s in all_samples),
        "n_problems": len(samples_per_problem),
        "k": k,
    }


# ---------------------------------------------------------------- samples on disk


def load_finished(path: Path, k: int) -> dict[int, list[dict[str, Any]]]:
    """Complete problems in a samples file, keyed by problem index; the file is rewritten
    without partial problems and without a line cut short by an interruption."""
    by_index: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            logger.warning("%s:%d: dropping an unreadable line (interrupted write)", path, line_number)
            continue
        if record["sample"] >= k:
            raise SdlabError(f"{path}:{line_number}: sample {record['sample']} but k={k}; resume with the k of the original run or start a new run")
        by_index[record["index"]].append(record)
    finished = {i: sorted(records, key=lambda r: r["sample"]) for i, records in by_index.items() if len({r["sample"] for r in records}) == k}
    write_jsonl(path, (r for i in sorted(finished) for r in finished[i]))
    return finished


def sample_record(index: int, problem: Problem, sample: int, completion: Completion, correct: bool) -> dict[str, Any]:
    return {
        "index": index,
        "problem_id": problem.id,
        "sample": sample,
        "text": completion.text,
        "num_tokens": completion.num_tokens,
        "finished": completion.finished,
        "answer": extract_answer(completion.text),
        "ground_truth": problem.answer,
        "correct": correct,
        "markers_paper": count_markers(completion.text, mode="paper"),
        "markers_word": count_markers(completion.text, mode="word"),
    }


# ---------------------------------------------------------------- the evaluation loop


def evaluate_dataset(generator: Generator, problems: Sequence[Problem], samples_path: Path | None, *, sampling: SamplingParams, enable_thinking: bool | None, batch_size: int, resume: bool, on_progress: Callable[[int, int], None] | None = None) -> list[list[dict[str, Any]]]:
    """Sample, grade and count markers for every problem; returns records per problem in order."""
    k = sampling.n
    done = load_finished(samples_path, k) if resume and samples_path is not None and samples_path.exists() else {}
    todo = [i for i in range(len(problems)) if i not in done]
    if on_progress:
        on_progress(len(done), len(problems))
    for batch_number, start in enumerate(range(0, len(todo), batch_size)):
        indices = todo[start : start + batch_size]
        seed = None if sampling.seed is None else sampling.seed + batch_number
        completions = generator.generate([problems[i].messages for i in indices], replace(sampling, seed=seed), enable_thinking=enable_thinking)
        flat = [(i, j, c) for i, group in zip(indices, completions) for j, c in enumerate(group)]
        correct = grade_many([c.text for _, _, c in flat], [problems[i].answer for i, _, _ in flat])
        for (i, j, completion), ok in zip(flat, correct):
            record = sample_record(i, problems[i], j, completion, ok)
            done.setdefault(i, []).append(record)
            if samples_path is not None:
                append_jsonl(samples_path, record)
        if on_progress:
            on_progress(len(done), len(problems))
    return [done[i] for i in range(len(problems))]


def load_eval_sets(data_sources: Sequence[str | Path], *, limit: int | None = None) -> dict[str, list[Problem]]:
    """{dataset name: problems}, loaded before any model so a bad file fails fast."""
    names = [dataset_name(source) for source in data_sources]
    if len(set(names)) != len(names):
        raise SdlabError(f"data sets must have distinct names, got {names}; rename the files")
    return {name: load_problems(source, limit=limit) for name, source in zip(names, data_sources)}


def evaluate(
    model: str | Path | Generator,
    data_sources: Sequence[str | Path] | Mapping[str, Sequence[Problem]],
    *,
    k: int = 16,
    sampling: SamplingParams | None = None,
    out_dir: str | Path | None = None,
    enable_thinking: bool | None = None,
    backend: str = "auto",
    limit: int | None = None,
    batch_size: int = 8,
    resume: bool = False,
    on_progress: ProgressCallback | None = None,
) -> dict[str, dict[str, Any]]:
    """Evaluate a model (path / hub id, or a ready generator such as one over a model being
    trained) on each data source (paths/specs, or {name: problems} already loaded); returns
    {dataset: metrics} and, with `out_dir`, writes `metrics.json` and `samples_<dataset>.jsonl`
    there. `sampling.n` is replaced by `k`."""
    sampling = replace(sampling or SamplingParams(), n=k)
    eval_sets = dict(data_sources) if isinstance(data_sources, Mapping) else load_eval_sets(data_sources, limit=limit)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    generator = make_generator(model, backend=backend, batch_size=batch_size) if isinstance(model, (str, Path)) else model
    metrics: dict[str, dict[str, Any]] = {}
    for name, problems in eval_sets.items():
        if limit is not None:
            problems = problems[:limit]
        if not problems:
            raise SdlabError(f"{name}: no problems to evaluate")
        samples_path = out / f"samples_{name}.jsonl" if out is not None else None
        if samples_path is not None and samples_path.exists() and not resume:
            raise SdlabError(f"{samples_path}: samples exist; resume the run or use a new output directory")
        progress = (lambda done, total, name=name: on_progress(name, done, total)) if on_progress else None
        records = evaluate_dataset(generator, problems, samples_path, sampling=sampling, enable_thinking=enable_thinking, batch_size=batch_size, resume=resume, on_progress=progress)
        metrics[name] = summarize(records, k)
        logger.info("%s: avg@%d %.3f, pass@%d %.3f", name, k, metrics[name]["avg@k"], k, metrics[name]["pass@k"])
        if out is not None:
            write_json(out / "metrics.json", metrics)
    return metrics


def check_resumable(out: Path, config: EvalConfig) -> None:
    """A resumed run must sample exactly as the original did (same model, k, sampling)."""
    saved_path = out / "config.yaml"
    if not saved_path.exists():
        return
    saved = yaml.safe_load(saved_path.read_text()) or {}
    current = config.model_dump(mode="json")
    changed = sorted(key for key in current.keys() - RESUMABLE_KEYS if saved.get(key) != current[key])
    if changed:
        details = ", ".join(f"{key}: {saved.get(key)!r} -> {current[key]!r}" for key in changed)
        raise SdlabError(f"{saved_path}: cannot resume with different settings ({details}); use a new --out or --force")


def run_eval(config: EvalConfig, *, force: bool = False, resume: bool = False, on_progress: ProgressCallback | None = None) -> dict[str, dict[str, Any]]:
    """`sdlab eval`: a run directory with config.yaml, versions.json, metrics and samples."""
    check_model_source(config.model)
    eval_sets = load_eval_sets(config.data, limit=config.limit)
    with run_dir_setup(config.out, force=force, resume=resume) as out:
        if resume:
            check_resumable(out, config)
        write_run_header(out, config)
        generator = make_generator(config.model, backend=config.backend, batch_size=config.batch_size)
    return evaluate(
        generator,
        eval_sets,
        k=config.k,
        sampling=config.sampling(),
        out_dir=out,
        enable_thinking=config.enable_thinking,
        backend=config.backend,
        limit=config.limit,
        batch_size=config.batch_size,
        resume=resume,
        on_progress=on_progress,
    )
