"""Checkpoints and resuming: which checkpoint a run continues from, that it continues the same
recipe on the same model build, and the state TRL's checkpoints leave out (the EMA teacher)."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import TrainerCallback

from sdlab import SdlabError
from sdlab.config import dump_config
from sdlab.config.schema import TrainConfig
from sdlab.core.io import MODEL_FILE, read_json, read_jsonl, write_json, write_jsonl
from sdlab.providers import build_record

logger = logging.getLogger(__name__)

STEP_LOGS = ("metrics.jsonl", "eval.jsonl", "samples.jsonl")


class EmaTeacherState(TrainerCallback):
    """Saves the EMA teacher's weights into each checkpoint and restores them on resume: TRL's
    checkpoints hold only the student, so a resumed EMA run would restart its teacher from the
    initial weights and diverge from an uninterrupted run. One process only (a sharded teacher
    would need a gather)."""

    FILE = "ema_teacher.safetensors"

    def __init__(self, trainer):
        self.trainer = trainer

    def _teacher(self):
        return self.trainer.accelerator.unwrap_model(self.trainer.teacher_model)

    def on_save(self, args, state, control, **kwargs):
        from safetensors.torch import save_model

        if state.is_world_process_zero:
            save_model(self._teacher(), str(Path(args.output_dir) / f"checkpoint-{state.global_step}" / self.FILE))

    def restore(self, checkpoint: Path) -> None:
        from safetensors.torch import load_model

        if not (checkpoint / self.FILE).exists():
            raise SdlabError(f"{checkpoint}: no {self.FILE}; this EMA run cannot be resumed exactly (start over with --force)")
        load_model(self._teacher(), str(checkpoint / self.FILE))


def last_checkpoint(run_dir: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    found = get_last_checkpoint(str(run_dir)) if run_dir.is_dir() else None
    return Path(found) if found else None


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[1])


def truncate_step_logs(run_dir: Path, *, after_step: int) -> None:
    """Drop rows logged after the checkpoint a run resumes from: the resumed run logs them again."""
    for name in STEP_LOGS:
        path = run_dir / name
        rows = read_jsonl(path)
        kept = [row for row in rows if row.get("step", 0) <= after_step]
        if len(kept) != len(rows):
            write_jsonl(path, kept)


def training_finished(checkpoint: Path) -> bool:
    """Whether `checkpoint` was taken at the run's last optimizer step (transformers' own state file)."""
    state = read_json(checkpoint / "trainer_state.json")
    return state["global_step"] >= state["max_steps"]


def export_model(checkpoint: Path, out: Path) -> None:
    """The final model directory from a checkpoint: weights (safetensors) and tokenizer only."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(checkpoint).save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(checkpoint).save_pretrained(out)


def check_same_model(run_dir: Path, model_path: str, *, resuming: bool) -> None:
    """Record which build a run starts from, and refuse to resume on another one: a provider's
    model name (`model: organism`) names whatever build is cached now, and a rebuild changes
    the weights."""
    build = build_record(model_path).get("settings_hash")
    record = run_dir / MODEL_FILE
    if resuming and record.exists():
        saved = read_json(record).get("settings_hash")
        if saved != build:
            raise SdlabError(f"{record}: this run started from model build {saved}, but {model_path} is now build {build}; rebuild that model or start over with --force")
        return
    write_json(record, {"model": model_path, "settings_hash": build})


def check_resumable(run_dir: Path, config: TrainConfig) -> Path | None:
    """The checkpoint to resume from; the recipe must match the one the run started with."""
    saved = run_dir / "config.yaml"
    if saved.exists() and saved.read_text() != dump_config(config):
        raise SdlabError(f"{saved}: --resume with a different config; rerun with the same recipe and overrides (diff it against {saved})")
    checkpoint = last_checkpoint(run_dir)
    if checkpoint is None:
        logger.warning("%s: no checkpoint yet; starting from step 0", run_dir)
    return checkpoint
