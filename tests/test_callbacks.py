"""EpistemicMonitor: metrics by hand, the early warning, resume, and rows from real GRPO/SDPO training."""

from __future__ import annotations

import logging

import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer, TrainerControl, TrainerState, TrainingArguments

from sdlab.core.epistemic import token_marker_mask, token_marker_occurrences
from sdlab.core.io import read_jsonl
from sdlab.training.callbacks import MONITOR_FIELDS, EpistemicMonitor, rollout_metrics
from sdlab.training.grpo import build_grpo_trainer


def test_rollout_metrics_by_hand():
    metrics = rollout_metrics(
        completions=["Wait, so \\boxed{2}", "maybe... hmm \\boxed{3}", "\\boxed{2}", "so \\boxed{2}"],
        num_tokens=[10, 20, 5, 5],
        rewards=[1.0, 0.0, 1.0, 1.0],
        group_size=2,
        success_threshold=0.5,
        marker_mode="paper",
    )
    assert metrics == {
        "reward_mean": 0.75,
        "accuracy": 0.75,
        "response_tokens_mean": 10.0,
        "markers_per_response": 0.75,  # (1 + 2 + 0 + 0) / 4
        "markers_per_1k_tokens": 75.0,  # 1000 * 3 / 40, pooled over the step
        "distinct_answers_per_group": 1.5,  # {2, 3} and {2}
    }


def log_step(monitor, tmp_path, step, *, markers, logs=None):
    state = TrainerState()
    state.global_step = step
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    text = "wait " * markers + "x " * (100 - markers)
    monitor.on_rollouts(args, state, TrainerControl(), completions=[text], completion_ids=[[0] * 100], rewards=[1.0], answers=["1"], group_size=1)
    monitor.on_log(args, state, TrainerControl(), logs=logs if logs is not None else {"loss": 0.5})


def test_early_warning_when_marker_density_halves(tmp_path, caplog):
    monitor = EpistemicMonitor(tmp_path, baseline_logs=2, drop_fraction=0.5)
    with caplog.at_level(logging.WARNING, logger="sdlab.training.callbacks"):
        for step, markers in enumerate([10, 10, 6, 4, 8], start=1):  # baseline 100 per 1k; 40 < 50 at step 4
            log_step(monitor, tmp_path, step, markers=markers)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["markers_per_1k_tokens"] for r in rows] == [100.0, 100.0, 60.0, 40.0, 80.0]
    assert [r["early_warning_step"] for r in rows] == [None, None, None, 4, 4]
    assert monitor.early_warning_step == 4
    assert sum("marker density" in message for message in caplog.messages) == 1
    assert all(set(MONITOR_FIELDS) <= set(r) for r in rows) and rows[0]["loss"] == 0.5


def test_resumed_monitor_keeps_baseline_and_warning(tmp_path):
    first = EpistemicMonitor(tmp_path, baseline_logs=2)
    for step, markers in enumerate([10, 10, 4], start=1):
        log_step(first, tmp_path, step, markers=markers)
    resumed = EpistemicMonitor(tmp_path, baseline_logs=2)
    resumed.on_train_begin(None, TrainerState(), TrainerControl())
    assert resumed.early_warning_step == 3 and resumed.densities == [100.0, 100.0, 40.0]


def test_summary_and_eval_logs_are_not_rows(tmp_path):
    monitor = EpistemicMonitor(tmp_path)
    log_step(monitor, tmp_path, 1, markers=1, logs={"train_runtime": 3.0, "train_loss": 0.1})
    log_step(monitor, tmp_path, 1, markers=1, logs={"eval_loss": 0.1})
    assert read_jsonl(tmp_path / "metrics.jsonl") == []


def test_divergence_split_between_marker_and_other_tokens(tmp_path, tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tokenizer("Wait, the sum is 5. Maybe check it again", add_special_tokens=False)["input_ids"]
    markers = torch.tensor(token_marker_mask(ids, tokenizer))
    assert markers.any() and not markers.all()
    completion_ids = torch.tensor([ids, ids])
    token_mask = torch.ones_like(completion_ids)
    distill_mask = torch.stack([token_mask[0], torch.zeros_like(token_mask[1])])  # row 2 had no teacher context
    divergence = torch.stack([torch.where(markers, 3.0, 1.0), torch.full((len(ids),), 100.0)])
    monitor = EpistemicMonitor(tmp_path)
    monitor.on_token_stats(None, None, None, processing_class=tokenizer, completion_ids=completion_ids, token_mask=token_mask,
                           distill_mask=distill_mask, divergence=divergence, student_entropy=torch.ones(2, len(ids)), teacher_entropy=torch.full((2, len(ids)), 2.0))
    log_step(monitor, tmp_path, 1, markers=0)
    row = read_jsonl(tmp_path / "metrics.jsonl")[0]
    n_markers = int(markers.sum())
    assert (row["divergence_marker_mean"], row["divergence_other_mean"], row["divergence_marker_ratio"]) == (3.0, 1.0, 3.0)
    assert row["divergence_marker_tokens"] == n_markers
    assert row["divergence_marker_share"] == pytest.approx(3 * n_markers / (3 * n_markers + len(ids) - n_markers))
    assert (row["entropy_student"], row["entropy_teacher"]) == (1.0, 2.0)
    occurrences = token_marker_occurrences(ids, tokenizer)  # per occurrence: its first piece is 3, its sum 3 x its pieces
    pieces = [occurrences.count(i) for i in sorted(set(occurrences) - {-1})]
    assert row["divergence_marker_first_piece_ratio"] == pytest.approx(3.0)
    assert row["divergence_marker_occurrence_ratio"] == pytest.approx(3.0 * sum(pieces) / len(pieces))


def test_grpo_training_rows(tiny_model_dir, tmp_path):
    def reward(prompts, completions, completion_ids=None, **kwargs):
        return [float(ids[0] % 2) for ids in completion_ids]

    data = Dataset.from_list([{"prompt": [{"role": "user", "content": "What is 1 plus 1?"}], "answer": "2"}] * 2)
    args = {"output_dir": str(tmp_path), "per_device_train_batch_size": 4, "num_generations": 4, "max_completion_length": 8, "max_steps": 2}
    trainer = build_grpo_trainer(model=tiny_model_dir, dataset=data, args=args, reward_funcs=reward, callbacks=[EpistemicMonitor(tmp_path)])
    trainer.train()
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert r["entropy_student"] == pytest.approx(r["entropy"], rel=1e-5)  # the per-token entropies GRPO itself logs
        assert r["reward_mean"] == pytest.approx(r["reward"]) and r["response_tokens_mean"] > 0
        assert r["divergence_mean"] is None and r["entropy_teacher"] is None


def test_report_to_trackers_see_the_monitors_metrics(tmp_path):
    """transformers calls the `report_to` integrations before the callbacks a trainer is given;
    once the monitor is moved first, a tracker logs the epistemic metrics too."""
    from types import SimpleNamespace

    from transformers import TrainerCallback, TrainerControl, TrainerState
    from transformers.trainer_callback import CallbackHandler

    from sdlab.training.callbacks import report_first

    class Tracker(TrainerCallback):  # stands in for TensorBoardCallback / WandbCallback / trackio
        def __init__(self):
            self.logged = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.logged.append(dict(logs))

    def one_logged_step(monitor, tracker, state):
        handler = CallbackHandler([tracker, monitor], None, None, None, None)
        trainer = SimpleNamespace(callback_handler=handler)
        monitor.on_rollouts(None, state, None, completions=["wait, <think>x</think> \\boxed{1}"], completion_ids=[[1, 2, 3]], rewards=[1.0], answers=["1"], group_size=1)
        return trainer, handler

    state = TrainerState()
    state.global_step = 1
    monitor, tracker = EpistemicMonitor(tmp_path), Tracker()
    trainer, handler = one_logged_step(monitor, tracker, state)
    handler.on_log(None, state, TrainerControl(), {"loss": 0.5})
    assert not any(key.startswith("sdlab/") for key in tracker.logged[-1])  # the order transformers gives
    trainer, handler = one_logged_step(monitor, tracker, state)
    report_first(trainer, monitor)
    handler.on_log(None, state, TrainerControl(), {"loss": 0.5})
    assert tracker.logged[-1]["loss"] == 0.5 and tracker.logged[-1]["sdlab/markers_per_response"] == 1.0
    assert "sdlab/reward_mean" in tracker.logged[-1] and "sdlab/early_warning_step" not in tracker.logged[-1]  # no value yet
    assert [row["markers_per_response"] for row in read_jsonl(tmp_path / "metrics.jsonl")] == [1.0, 1.0]
