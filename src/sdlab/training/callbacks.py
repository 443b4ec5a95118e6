"""`EpistemicMonitor`: per logging step, how the policy's reasoning style moves while it trains.

    trainer = build_sdpo_trainer(..., callbacks=[EpistemicMonitor(run_dir)])

Each logged step appends one row to `run_dir/metrics.jsonl` and hands the same metrics to TRL's
`report_to` trackers (as `sdlab/<field>`): TRL's own numbers (loss, learning
rate, ...) plus sdlab's fields (docs/algorithms.md lists them): reward and accuracy, response
length, epistemic markers per response and per 1,000 tokens, student/teacher entropy, answer
diversity within each rollout group, and for self-distillation the per-token divergence split
into marker and non-marker tokens (per sub-token, and per marker occurrence: its first piece and
its pieces summed). When marker density falls by more than `drop_fraction` of
its starting value (mean of the first `baseline_logs` rows), it logs a warning once and records
`early_warning_step` in that row and every later one.

The trainers (`sdlab.training.grpo.SdlabGRPOTrainer`, `sdlab.training.sdpo.SdlabSDPOTrainer`) feed it through
two events sent with `dispatch`, the same mechanism TRL's SDPO uses for its own events:
`on_rollouts` (one generation batch) and `on_token_stats` (one loss computation).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from sdlab.config.schema import PeriodicEvalConfig
from sdlab.core.io import append_jsonl, atomic_write_text, library_versions, read_json, read_jsonl, write_json
from sdlab.core.losses import concat_occurrences, split_by_mask, split_by_occurrence

logger = logging.getLogger(__name__)
REPORT_PREFIX = "sdlab/"  # the monitor's metrics as the trackers show them (sdlab/markers_per_1k_tokens, ...)

MONITOR_FIELDS = (
    "reward_mean",
    "accuracy",
    "response_tokens_mean",
    "markers_per_response",
    "markers_per_1k_tokens",
    "distinct_answers_per_group",
    "entropy_student",
    "entropy_teacher",
    "divergence_mean",
    "divergence_marker_mean",
    "divergence_other_mean",
    "divergence_marker_ratio",
    "divergence_marker_share",
    "divergence_marker_tokens",
    "divergence_marker_first_piece_ratio",
    "divergence_marker_occurrence_ratio",
    "distinct_problems_seen",
    "early_warning_step",
)
PROBLEMS_SEEN = "problems_seen.json"  # {problem id: generation batches it was drawn in}, beside metrics.jsonl


def report_first(trainer: Any, callback: TrainerCallback) -> None:
    """Move `callback` to the front of `trainer`'s callbacks: transformers puts the `report_to`
    integrations before the callbacks a trainer is given, and they log the `logs` dict of
    `on_log` as they find it, so the monitor must add its metrics before they read it."""
    handler = trainer.callback_handler
    handler.callbacks.remove(callback)
    handler.callbacks.insert(0, callback)


def dispatch(trainer: Any, event: str, **payload: Any) -> None:
    """Call `event` on every callback of `trainer` that defines it (extra events beyond HF's)."""
    for callback in trainer.callback_handler.callbacks:
        handler = getattr(callback, event, None)
        if handler is not None:
            handler(args=trainer.args, state=trainer.state, control=trainer.control, processing_class=trainer.processing_class, **payload)


def listens(trainer: Any, event: str) -> bool:
    """Whether any callback of `trainer` handles `event` (so its payload is worth computing)."""
    return any(hasattr(callback, event) for callback in trainer.callback_handler.callbacks)


def rollout_payload(*, completions: list[str], completion_ids: list[list[int]], rewards: list[float], inputs: list[dict], group_size: int) -> dict[str, Any]:
    """The `on_rollouts` event's arguments, from what a trainer has after scoring a generation batch."""
    return {
        "completions": list(completions),
        "completion_ids": [list(ids) for ids in completion_ids],
        "rewards": [float(r) for r in rewards],
        "answers": [row.get("answer") for row in inputs],
        "problem_ids": [row.get("problem_id") for row in inputs],
        "group_size": int(group_size),
    }


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else None


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and (math.isnan(value) or math.isinf(value)) else value


def rollout_metrics(*, completions: list[str], num_tokens: list[int], rewards: list[float], group_size: int, success_threshold: float, marker_mode: str) -> dict[str, float | None]:
    """Reward, accuracy, length, marker counts and in-group answer diversity of some rollouts."""
    from sdlab.core.epistemic import count_markers
    from sdlab.core.grading import extract_answer

    markers = [count_markers(text, mode=marker_mode) for text in completions]
    answers = [extract_answer(text) for text in completions]
    groups = [answers[i : i + group_size] for i in range(0, len(answers), max(1, group_size))]
    total_tokens = sum(num_tokens)
    return {
        "reward_mean": _mean(rewards),
        "accuracy": _mean([float(r >= success_threshold) for r in rewards]),
        "response_tokens_mean": _mean([float(n) for n in num_tokens]),
        "markers_per_response": _mean([float(m) for m in markers]),
        # pooled over the step (total markers / total tokens), so long responses weigh by their length
        "markers_per_1k_tokens": 1000.0 * sum(markers) / total_tokens if total_tokens else None,
        "distinct_answers_per_group": _mean([float(len(set(group))) for group in groups]),
    }


def marker_occurrences_for(completion_ids: torch.Tensor, token_mask: torch.Tensor, tokenizer: Any) -> torch.Tensor:
    """[B, T] ids and mask -> [B, T] long: the epistemic-marker occurrence each token overlaps
    (ids unique over the batch), -1 elsewhere."""
    from sdlab.core.epistemic import token_marker_occurrences

    occurrence = torch.full_like(token_mask, -1, dtype=torch.long)
    offset = 0
    for row in range(completion_ids.size(0)):
        active = token_mask[row].bool()
        ids = completion_ids[row][active].tolist()
        if ids:
            local = torch.tensor(token_marker_occurrences(ids, tokenizer), dtype=torch.long)
            occurrence[row, active] = torch.where(local >= 0, local + offset, local)
            offset += int(local.max()) + 1 if int(local.max()) >= 0 else 0
    return occurrence


class EpistemicMonitor(TrainerCallback):
    """Writes one `metrics.jsonl` row per logging step; see the module docstring."""

    def __init__(self, run_dir: str | Path, *, drop_fraction: float = 0.5, baseline_logs: int = 3, success_threshold: float = 0.5, marker_mode: str = "paper", filename: str = "metrics.jsonl"):
        self.path = Path(run_dir) / filename
        self.drop_fraction = drop_fraction
        self.baseline_logs = baseline_logs
        self.success_threshold = success_threshold
        self.marker_mode = marker_mode
        self.early_warning_step: int | None = None
        self.densities: list[float] = []
        self._rollouts: list[dict[str, Any]] = []
        self._token_stats: list[dict[str, torch.Tensor]] = []
        self.problems_seen: dict[str, int] = {}
        self._elapsed_before = 0.0  # seconds of earlier sittings, up to the checkpoint resumed from
        self._sitting_start = time.perf_counter()

    # -- events from the trainers -------------------------------------------------------------
    def on_rollouts(self, args, state, control, *, processing_class=None, **payload):
        self._rollouts.append(payload)

    def on_token_stats(self, args, state, control, *, processing_class=None, **stats):
        if "divergence" in stats:  # marker masks are computed now, while the tokenizer is at hand
            stats["marker_occurrence"] = marker_occurrences_for(stats["completion_ids"], stats["distill_mask"], processing_class)
        self._token_stats.append(stats)

    # -- HF callback hooks ----------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        """On resume, earlier rows set the marker-density baseline and any warning already given,
        the problems drawn so far carry over (the resumed sampler draws the same ones again), and
        the clock goes on from the last kept row's `elapsed_s`."""
        self._sitting_start = time.perf_counter()
        seen = self.path.parent / PROBLEMS_SEEN
        if seen.exists():
            self.problems_seen = read_json(seen)
        for row in read_jsonl(self.path):
            if row.get("markers_per_1k_tokens") is not None:
                self.densities.append(row["markers_per_1k_tokens"])
            if row.get("early_warning_step") is not None:
                self.early_warning_step = row["early_warning_step"]
            self._elapsed_before = row.get("elapsed_s", self._elapsed_before)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "train_runtime" in logs or any(key.startswith("eval_") for key in logs):
            return  # the end-of-training summary and evaluation rows belong elsewhere
        row: dict[str, Any] = {"step": state.global_step}
        row.update({key: _finite(float(value)) for key, value in logs.items() if isinstance(value, (int, float)) and not isinstance(value, bool)})
        row.update(self._drain())
        self._check_early_warning(row, state.global_step)
        row["early_warning_step"] = self.early_warning_step
        row["elapsed_s"] = round(self._elapsed_before + time.perf_counter() - self._sitting_start, 2)  # training time over every sitting
        # The same numbers for TRL's `report_to` trackers (trackio, TensorBoard, W&B), which read
        # this `logs` dict after this callback (see `report_first`).
        logs.update({f"{REPORT_PREFIX}{key}": row[key] for key in MONITOR_FIELDS if row.get(key) is not None})
        if state.is_world_process_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            append_jsonl(self.path, row)
            if self.problems_seen:
                write_json(self.path.parent / PROBLEMS_SEEN, self.problems_seen)

    # -- computation --------------------------------------------------------------------------
    def _drain(self) -> dict[str, Any]:
        metrics: dict[str, Any] = {name: None for name in MONITOR_FIELDS}
        for batch in self._rollouts:
            for problem_id in {str(i) for i in batch.get("problem_ids", []) if i is not None}:
                self.problems_seen[problem_id] = self.problems_seen.get(problem_id, 0) + 1
        if self.problems_seen:
            metrics["distinct_problems_seen"] = len(self.problems_seen)
        if self._rollouts:
            metrics.update(
                rollout_metrics(
                    completions=[c for batch in self._rollouts for c in batch["completions"]],
                    num_tokens=[len(ids) for batch in self._rollouts for ids in batch["completion_ids"]],
                    rewards=[r for batch in self._rollouts for r in batch["rewards"]],
                    group_size=self._rollouts[0]["group_size"],
                    success_threshold=self.success_threshold,
                    marker_mode=self.marker_mode,
                )
            )
        if self._token_stats:
            metrics.update(self._token_metrics(self._token_stats))
        self._rollouts, self._token_stats = [], []
        return {key: _finite(value) for key, value in metrics.items()}

    @staticmethod
    def _token_metrics(batches: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
        def pooled(name: str, mask_name: str) -> float | None:
            parts = [b[name][b[mask_name].bool()].float() for b in batches if b.get(name) is not None]
            values = torch.cat(parts) if parts else torch.empty(0)
            return float(values.mean()) if values.numel() else None

        metrics = {"entropy_student": pooled("student_entropy", "token_mask"), "entropy_teacher": pooled("teacher_entropy", "distill_mask")}
        with_divergence = [b for b in batches if b.get("divergence") is not None]
        if with_divergence:
            values = torch.cat([b["divergence"][b["distill_mask"].bool()].float() for b in with_divergence])
            occurrence = concat_occurrences([b["marker_occurrence"][b["distill_mask"].bool()] for b in with_divergence])
            markers = occurrence >= 0
            if values.numel():
                split = split_by_mask(values, torch.ones_like(markers), markers)
                per_occurrence = split_by_occurrence(values, occurrence)
                metrics.update(
                    divergence_mean=float(values.mean()),
                    divergence_marker_mean=split["marker_mean"],
                    divergence_other_mean=split["other_mean"],
                    divergence_marker_ratio=split["ratio"],
                    divergence_marker_share=split["marker_share"],
                    divergence_marker_tokens=split["marker_tokens"],
                    divergence_marker_first_piece_ratio=per_occurrence["first_piece_ratio"],
                    divergence_marker_occurrence_ratio=per_occurrence["occurrence_sum_ratio"],
                )
        return metrics

    def _check_early_warning(self, row: dict[str, Any], step: int) -> None:
        density = row.get("markers_per_1k_tokens")
        if density is None:
            return
        self.densities.append(density)
        if self.early_warning_step is not None or len(self.densities) <= self.baseline_logs:
            return
        baseline = sum(self.densities[: self.baseline_logs]) / self.baseline_logs
        if baseline > 0 and density < (1.0 - self.drop_fraction) * baseline:
            self.early_warning_step = step
            logger.warning(
                "step %d: epistemic marker density %.2f per 1k tokens is below %.0f%% of its starting %.2f; "
                "the policy is dropping its hedges (the study's early sign of degradation)",
                step, density, 100 * (1 - self.drop_fraction), baseline,
            )


class SampleWriter(TrainerCallback):
    """Appends the first `per_batch` rollouts of every generation batch to samples.jsonl
    (listens to the `on_rollouts` event the sdlab trainers send)."""

    def __init__(self, path: Path, *, per_batch: int):
        self.path, self.per_batch = path, per_batch

    def on_rollouts(self, args, state, control, *, completions, rewards, answers, **_):
        from sdlab.core.io import append_jsonl

        if not state.is_world_process_zero:
            return
        for index, (text, reward, answer) in enumerate(list(zip(completions, rewards, answers))[: self.per_batch]):
            append_jsonl(self.path, {"step": state.global_step + 1, "index": index, "reward": reward, "answer": answer, "completion": text})


class TeacherAuditEcho(TrainerCallback):
    """Hands the teacher-input audit (written by SdlabSDPOTrainer) to `show` after the first step."""

    def __init__(self, path: Path, show: Callable[[str], None]):
        self.path, self.show, self.shown = path, show, False

    def on_step_end(self, args, state, control, **kwargs):
        if not self.shown and self.path.exists() and state.is_world_process_zero:
            self.shown = True
            self.show(self.path.read_text())


START_CACHE_MAX_BYTES = 64 * 2**20  # larger models are evaluated every time: hashing their weights costs more than it saves


def start_eval_key(model_path: str | Path, config: PeriodicEvalConfig, *, seed: int, enable_thinking: bool | None) -> str | None:
    """What the step-0 evaluation depends on, hashed: the weights' bytes, the evaluation settings,
    the seed and the library versions; None for a model not on disk or over the size limit."""
    import hashlib

    files = sorted(Path(model_path).glob("*.safetensors")) if Path(model_path).is_dir() else []
    if not files or sum(f.stat().st_size for f in files) > START_CACHE_MAX_BYTES:
        return None
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    settings = {"eval": config.model_dump(mode="json", exclude={"every"}), "seed": seed, "enable_thinking": enable_thinking, "versions": library_versions()}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


class PeriodicEval(TrainerCallback):
    """Evaluates the live model on ID/OOD sources every `every` optimizer updates and appends one
    row per source to eval.jsonl: accuracy curves, not only end points. Sampling runs under a
    forked, seeded RNG so that evaluating does not change the training trajectory.

    With `start_cache` (a directory) the step-0 evaluation, of the untrained model, is kept there
    and reused by every later run of the same model, settings and seed: the cells of a sweep
    share it, a few minutes each on the organism. Training never sees the difference (the RNG is
    forked either way)."""

    def __init__(self, *, path: Path, config: PeriodicEvalConfig, every: int, enable_thinking: bool | None, seed: int,
                 model_path: str | Path | None = None, start_cache: Path | None = None):
        self.path, self.config, self.every, self.enable_thinking, self.seed = path, config, every, enable_thinking, seed
        self.model_path, self.start_cache = model_path, start_cache

    def on_train_begin(self, args, state, control, **kwargs):
        if not (self.config.at_start and state.global_step == 0):
            return
        key = start_eval_key(self.model_path, self.config, seed=self.seed, enable_thinking=self.enable_thinking) if self.start_cache and self.model_path else None
        cached = self.start_cache / f"{key}.jsonl" if key else None
        if cached is not None and cached.is_file():
            self._record(read_jsonl(cached))
            return
        rows = self._evaluate(state.global_step, **kwargs)
        self._record(rows)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(cached, "".join(json.dumps(row, default=float) + "\n" for row in rows))

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self._record(self._evaluate(state.global_step, **kwargs))

    def _record(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            append_jsonl(self.path, row)

    def _evaluate(self, step: int, *, model, processing_class, **_) -> list[dict[str, Any]]:
        """One row per source at this step (not yet written)."""
        import torch

        from sdlab.evaluation.evaluate import evaluate
        from sdlab.evaluation.generation import make_generator

        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        was_training = model.training
        model.eval()
        try:
            with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_available() else []):
                generator = make_generator(model, tokenizer, backend="transformers", batch_size=32)
                sampling = self.config.sampling_params(n=self.config.k, seed=self.seed + step)
                results = evaluate(generator, self.config.sources, k=self.config.k, sampling=sampling, limit=self.config.limit, enable_thinking=self.enable_thinking)
        finally:
            model.train(was_training)
        return [{"step": step, "dataset": name, **metrics} for name, metrics in results.items()]
