"""`sdlab train`: one recipe -> one run directory with metrics, samples, checkpoints and a summary.

    sdlab train recipes/organism/sdpo_solution.yaml steps=60 --force
    accelerate launch --config_file recipes/accelerate/zero3.yaml -m sdlab.cli train recipes/models/qwen3-8b/sdpo.yaml

This module only orchestrates: the trainers come from `sdlab.grpo` (TRL's GRPOTrainer, the
baseline), `sdlab.sdpo` (sdlab's subclass of TRL's SDPOTrainer) and `sdlab.sft` (TRL's
SFTTrainer); the per-step epistemic metrics from `sdlab.callbacks.EpistemicMonitor`.

Run directory: `config.yaml` (resolved), `versions.json`, `metrics.jsonl` (one row per logged
step), `eval.jsonl` (periodic ID/OOD evaluation), `samples.jsonl`, `checkpoint-N/`
(safetensors + optimizer + RNG state, what `--resume` continues from), `model/` (final
weights), `summary.json`, and for SDPO `teacher_audit.{jsonl,txt}` (what the teacher saw).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from sdlab import SdlabError
from sdlab.config import dump_config
from sdlab.rundir import MODEL_FILE, prepare_run_dir, read_json, read_jsonl, write_json, write_run_header
from sdlab.train_config import ORGANISM, TrainConfig

logger = logging.getLogger(__name__)

STEP_LOGS = ("metrics.jsonl", "eval.jsonl", "samples.jsonl")


class SampleWriter(TrainerCallback):
    """Appends the first `per_batch` rollouts of every generation batch to samples.jsonl
    (listens to the `on_rollouts` event the sdlab trainers send)."""

    def __init__(self, path: Path, *, per_batch: int):
        self.path, self.per_batch = path, per_batch

    def on_rollouts(self, args, state, control, *, completions, rewards, answers, **_):
        from sdlab.rundir import append_jsonl

        if not state.is_world_process_zero:
            return
        for index, (text, reward, answer) in enumerate(list(zip(completions, rewards, answers))[: self.per_batch]):
            append_jsonl(self.path, {"step": state.global_step + 1, "index": index, "reward": reward, "answer": answer, "completion": text})


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


class TeacherAuditEcho(TrainerCallback):
    """Hands the teacher-input audit (written by SdlabSDPOTrainer) to `show` after the first step."""

    def __init__(self, path: Path, show: Callable[[str], None]):
        self.path, self.show, self.shown = path, show, False

    def on_step_end(self, args, state, control, **kwargs):
        if not self.shown and self.path.exists() and state.is_world_process_zero:
            self.shown = True
            self.show(self.path.read_text())


class PeriodicEval(TrainerCallback):
    """Evaluates the live model on ID/OOD sources every `every` optimizer updates and appends one
    row per source to eval.jsonl: accuracy curves, not only end points. Sampling runs under a
    forked, seeded RNG so that evaluating does not change the training trajectory."""

    def __init__(self, *, path: Path, sources: list[str], every: int, at_start: bool, k: int, max_new_tokens: int, temperature: float, limit: int | None, enable_thinking: bool | None, seed: int):
        self.path, self.sources, self.every, self.at_start = path, sources, every, at_start
        self.k, self.limit, self.enable_thinking, self.seed = k, limit, enable_thinking, seed
        self.sampling = dict(temperature=temperature, max_new_tokens=max_new_tokens)

    def on_train_begin(self, args, state, control, **kwargs):
        if self.at_start and state.global_step == 0:
            self._evaluate(state.global_step, **kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self._evaluate(state.global_step, **kwargs)

    def _evaluate(self, step: int, *, model, processing_class, **_):
        import torch

        from sdlab.evaluate import evaluate
        from sdlab.generation import SamplingParams, make_generator
        from sdlab.rundir import append_jsonl

        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        was_training = model.training
        model.eval()
        try:
            with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_available() else []):
                generator = make_generator(model, tokenizer, backend="transformers", batch_size=32)
                sampling = SamplingParams(**self.sampling, seed=self.seed + step)
                results = evaluate(generator, self.sources, k=self.k, sampling=sampling, limit=self.limit, enable_thinking=self.enable_thinking)
        finally:
            model.train(was_training)
        for name, metrics in results.items():
            append_jsonl(self.path, {"step": step, "dataset": name, **metrics})


def resolve_model(spec: str) -> str:
    """`organism` -> the default organism's directory (built once, then cached)."""
    if spec != ORGANISM:
        return spec
    from sdlab.organism.build import build_organism

    return str(build_organism())


def apply_threads(config: TrainConfig) -> None:
    """Set torch's CPU threads from `runtime.threads` (None keeps torch's default)."""
    if config.runtime.threads is not None:
        import torch

        torch.set_num_threads(config.runtime.threads)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def batch_layout(*, completions_per_update: int, micro_batch: int | None, processes: int) -> tuple[int, int]:
    """(per-device micro-batch, gradient-accumulation steps) so that one optimizer update sees
    exactly `completions_per_update` sequences over all processes."""
    micro = micro_batch or max(1, completions_per_update // processes)
    if completions_per_update % (micro * processes):
        raise SdlabError(
            f"runtime.micro_batch={micro} x {processes} process(es) does not divide the {completions_per_update} sequences of one update; pick a divisor"
        )
    return micro, completions_per_update // (micro * processes)


def common_args(config: TrainConfig, *, output_dir: Path, max_steps: int) -> dict[str, Any]:
    """TrainingArguments shared by every method (TRL's GRPO/SDPO/SFT configs all take them)."""
    runtime = config.runtime
    return dict(
        output_dir=str(output_dir),
        max_steps=max_steps,
        learning_rate=config.lr,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_steps * config.updates_per_step,  # TRL counts optimizer updates
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=config.logging.logging_steps,
        report_to=[] if config.logging.report_to == "none" else [config.logging.report_to],
        save_strategy="steps",
        # In generation batches, so a checkpoint never falls between the updates of one batch
        # (TRL keeps that batch in memory only; resuming mid-batch could not be exact).
        save_steps=config.save_steps * config.updates_per_step,
        save_total_limit=config.save_total_limit,
        bf16=runtime.bf16,
        gradient_checkpointing=runtime.gradient_checkpointing,
        use_cpu=runtime.use_cpu,
        dataloader_num_workers=runtime.dataloader_num_workers,
        disable_tqdm=False,
    )


def rollout_args(config: TrainConfig, *, processes: int) -> dict[str, Any]:
    """GRPO/SDPO generation settings: `batch` prompts x `rollouts` per step, split into
    `batch // mini_batch` optimizer updates."""
    completions_per_update = (config.mini_batch or config.batch) * config.rollouts
    micro, accumulation = batch_layout(completions_per_update=completions_per_update, micro_batch=config.runtime.micro_batch, processes=processes)
    vllm = config.runtime.vllm
    args = dict(
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulation,
        steps_per_generation=accumulation * config.updates_per_step,
        num_generations=config.rollouts,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=config.top_k,
        use_vllm=vllm.enabled,
        scale_rewards=config.scale_rewards,
        epsilon=config.epsilon_low,
        epsilon_high=config.epsilon_high,
        loss_type=config.loss_type,
    )
    if config.enable_thinking is not None:
        args["chat_template_kwargs"] = {"enable_thinking": config.enable_thinking}
    if vllm.enabled:
        args.update(
            vllm_mode=vllm.mode,
            vllm_gpu_memory_utilization=vllm.gpu_memory_utilization,
            vllm_tensor_parallel_size=vllm.tensor_parallel_size,
            vllm_server_base_url=vllm.server_base_url,
            vllm_max_model_length=vllm.max_model_length,
            vllm_enable_sleep_mode=vllm.enable_sleep_mode,
        )
    return args


def grpo_importance_sampling_args(cap: float | None) -> dict[str, Any]:
    """The study's token-level rollout correction (weights min(pi_train / pi_rollout, cap)) as TRL's
    GRPOConfig fields. TRL applies it only when vLLM generates; with transformers generation the
    sampler is the trained model and the weights would be 1."""
    if cap is None:
        return {"vllm_importance_sampling_correction": False}
    return {"vllm_importance_sampling_correction": True, "vllm_importance_sampling_mode": "token_truncate", "vllm_importance_sampling_clip_max": cap}


def last_checkpoint(run_dir: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    found = get_last_checkpoint(str(run_dir)) if run_dir.is_dir() else None
    return Path(found) if found else None


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[1])


def truncate_step_logs(run_dir: Path, *, after_step: int) -> None:
    """Drop rows logged after the checkpoint a run resumes from: the resumed run logs them again."""
    import json

    for name in STEP_LOGS:
        path = run_dir / name
        rows = read_jsonl(path)
        kept = [row for row in rows if row.get("step", 0) <= after_step]
        if len(kept) != len(rows):
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(row) + "\n" for row in kept))
            tmp.replace(path)


def training_finished(checkpoint: Path) -> bool:
    """Whether `checkpoint` was taken at the run's last optimizer step (transformers' own state file)."""
    state = read_json(checkpoint / "trainer_state.json")
    return state["global_step"] >= state["max_steps"]


def export_model(checkpoint: Path, out: Path) -> None:
    """The final model directory from a checkpoint: weights (safetensors) and tokenizer only."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(checkpoint).save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(checkpoint).save_pretrained(out)


def check_runtime(config: TrainConfig) -> None:
    """A GPU recipe on a machine without CUDA, or a vLLM recipe without vLLM, stops here with
    the overrides that run it, not in transformers' or TRL's argument checks after the run
    directory exists."""
    import torch

    from sdlab.generation import vllm_available

    runtime = config.runtime
    if not runtime.use_cpu and not torch.cuda.is_available():
        raise SdlabError("runtime.use_cpu is false (a GPU recipe) but torch sees no CUDA device; "
                         "to run it on this machine pass runtime.use_cpu=true runtime.bf16=false" + (" runtime.vllm.enabled=false" if runtime.vllm.enabled else ""))
    if runtime.vllm.enabled and not vllm_available():
        raise SdlabError("runtime.vllm.enabled needs vLLM and a CUDA device (pip install 'sdlab[vllm]'); pass runtime.vllm.enabled=false to generate with transformers")


def check_same_model(run_dir: Path, model_path: str, *, resuming: bool) -> None:
    """Record which organism build a run starts from, and refuse to resume on another one:
    `model: organism` names whatever build is cached now, and a rebuild changes the weights."""
    from sdlab.organism.build import BUILD_FILE

    build = read_json(Path(model_path) / BUILD_FILE).get("settings_hash")
    record = run_dir / MODEL_FILE
    if resuming and record.exists():
        saved = read_json(record).get("settings_hash")
        if saved != build:
            raise SdlabError(f"{record}: this run started from organism build {saved}, but {model_path} is now build {build}; rebuild that organism or start over with --force")
        return
    write_json(record, {"model": model_path, "settings_hash": build})


def check_window(config: TrainConfig, model_path: str) -> None:
    """Warn when a sequence can outgrow an organism's pretraining window: beyond the longest
    distance it was trained on, its next-token distribution degrades (docs/organism.md#window),
    and an SDPO teacher's signal there is noise."""
    from sdlab.organism.build import BUILD_FILE, trained_window

    settings = read_json(Path(model_path) / BUILD_FILE).get("settings")
    window = trained_window(settings) if settings else None
    if window and config.longest_sequence > window:
        logger.warning("%s: sequences of up to %d tokens, but this organism was pretrained on %d-token windows; "
                       "lower max_completion_length / sdpo.max_teacher_prompt_length or build the organism with longer windows",
                       config.output_dir, config.longest_sequence, window)


def warn_missing_abilities(config: TrainConfig, model_path: str) -> None:
    """Warn when the organism's build judged its draw to lack an ability the experiments rely on
    (docs/organism.md): a sweep on such a draw measures its breakage, not the method."""
    from sdlab.organism.build import recorded_missing_abilities

    for ability in recorded_missing_abilities(model_path):
        logger.warning("%s: the organism %s lacks %s (its README.md, Health)", config.output_dir, model_path, ability)


def check_resumable(run_dir: Path, config: TrainConfig) -> Path | None:
    """The checkpoint to resume from; the recipe must match the one the run started with."""
    saved = run_dir / "config.yaml"
    if saved.exists() and saved.read_text() != dump_config(config):
        raise SdlabError(f"{saved}: --resume with a different config; rerun with the same recipe and overrides (diff it against {saved})")
    checkpoint = last_checkpoint(run_dir)
    if checkpoint is None:
        logger.warning("%s: no checkpoint yet; starting from step 0", run_dir)
    return checkpoint


def build_trainer(config: TrainConfig, *, model_path: str, run_dir: Path, callbacks: list, show_teacher: int, reward_funcs: Any = None):
    """The TRL trainer for `config.method`, writing checkpoints (and SDPO's teacher audit) to `run_dir`."""
    output_dir = run_dir
    if config.method == "sft":
        from sdlab.sft import build_sft_trainer, load_sft_dataset

        dataset = load_sft_dataset(config.sft.dataset)
        micro, accumulation = batch_layout(completions_per_update=config.batch, micro_batch=config.runtime.micro_batch, processes=world_size())
        max_steps = sft_max_steps(steps=config.steps, epochs=config.sft.epochs, examples=len(dataset), batch=config.batch)
        args = common_args(config, output_dir=output_dir, max_steps=max_steps) | dict(
            per_device_train_batch_size=micro, gradient_accumulation_steps=accumulation, max_length=config.sft.max_length
        )
        return build_sft_trainer(model=model_path, dataset=dataset, args=args, callbacks=callbacks)
    from sdlab.data import load_problems
    from sdlab.grpo import build_grpo_trainer
    from sdlab.sdpo import build_sdpo_trainer

    problems = load_problems(config.data.train, limit=config.data.limit)
    args = common_args(config, output_dir=output_dir, max_steps=config.optimizer_steps) | rollout_args(config, processes=world_size())
    if config.method == "grpo":
        args |= grpo_importance_sampling_args(config.importance_sampling_cap)
        return build_grpo_trainer(model=model_path, problems=problems, args=args, callbacks=callbacks, reward_funcs=reward_funcs)
    sd = config.sdpo
    args["max_prompt_length"] = config.max_prompt_length  # TRL 1.16's GRPOConfig has no prompt truncation
    return build_sdpo_trainer(
        model=model_path,
        problems=problems,
        args=args,
        callbacks=callbacks,
        reward_funcs=reward_funcs,
        context=sd.context,
        teacher=sd.teacher,
        ema_rate=sd.ema_rate,
        distillation=sd.distillation,
        topk=sd.topk,
        tail=sd.tail,
        alpha=sd.alpha,
        success_threshold=sd.success_threshold,
        grpo_blend=sd.grpo_blend,
        is_clip=config.importance_sampling_cap,
        max_teacher_prompt_length=sd.max_teacher_prompt_length,
        show_teacher=show_teacher,
        reduction=sd.reduction,
        template=sd.template,
    )


def run_training(
    config: TrainConfig,
    *,
    resume: bool = False,
    force: bool = False,
    show_teacher: int | None = None,
    on_teacher_audit: Callable[[str], None] | None = None,
    extra_callbacks: list | None = None,
    reward_funcs: Any = None,
) -> dict[str, Any]:
    """Train `config` into `config.output_dir`; returns (and writes) the run summary.

    `show_teacher` overrides `sdpo.show_teacher` (teacher inputs audited per batch);
    `on_teacher_audit` receives the rendered audit once the first batch has been trained on;
    `reward_funcs` replaces the 0/1 math reward (TRL's reward-function signature)."""
    from transformers import set_seed

    from sdlab.callbacks import EpistemicMonitor

    check_runtime(config)
    if config.warmup_steps and config.lr_scheduler != "constant" and config.warmup_steps >= config.steps:
        logger.warning("%s: warmup_steps=%d >= steps=%d: the learning rate never reaches lr=%g", config.output_dir, config.warmup_steps, config.steps, config.lr)
    run_dir = prepare_run_dir(config.output_dir, force=force, resume=resume)
    checkpoint = check_resumable(run_dir, config) if resume else None
    if resume:
        truncate_step_logs(run_dir, after_step=checkpoint_step(checkpoint) if checkpoint else 0)
    write_run_header(run_dir, config)
    if checkpoint is not None and training_finished(checkpoint):
        # Killed after its last checkpoint but before the final model was written: resuming
        # the trainer would train one step past max_steps, so only finish the run.
        export_model(checkpoint, run_dir / "model")
        summary = summarize(run_dir, wall_time_s=0.0, resumed_from=checkpoint)
        write_json(run_dir / "summary.json", summary)
        return summary
    apply_threads(config)
    set_seed(config.seed)
    model_path = resolve_model(config.model)
    check_same_model(run_dir, model_path, resuming=checkpoint is not None)
    check_window(config, model_path)
    warn_missing_abilities(config, model_path)
    if config.method == "sft" and config.sft.collect is not None and not Path(config.sft.dataset).is_file():
        from sdlab.sft import collect_sft_data

        collect = config.sft.collect
        collect_sft_data(
            model=model_path, data=collect.data, mode=collect.mode, n_correct=collect.n_correct, out=config.sft.dataset,
            max_attempts=collect.max_attempts, max_new_tokens=collect.max_new_tokens, temperature=collect.temperature, seed=config.seed,
        )
    monitor = EpistemicMonitor(run_dir, success_threshold=config.sdpo.success_threshold)
    callbacks = [monitor, *(extra_callbacks or [])]
    if on_teacher_audit is not None and config.method == "sdpo":
        callbacks.append(TeacherAuditEcho(run_dir / "teacher_audit.txt", on_teacher_audit))
    if config.logging.samples_per_step and config.method != "sft":
        callbacks.append(SampleWriter(run_dir / "samples.jsonl", per_batch=config.logging.samples_per_step))
    if config.eval.every:
        if world_size() > 1:
            raise SdlabError("eval.every: periodic evaluation runs the live model in one process; with several processes set eval.every=0 and evaluate the checkpoints with `sdlab eval` (docs/training.md)")
        ev = config.eval
        callbacks.append(PeriodicEval(
            path=run_dir / "eval.jsonl", sources=ev.sources, every=ev.every * config.updates_per_step, at_start=ev.at_start, k=ev.k,
            max_new_tokens=ev.max_new_tokens, temperature=ev.temperature, limit=ev.limit, enable_thinking=config.enable_thinking, seed=config.seed,
        ))
    trainer = build_trainer(config, model_path=model_path, run_dir=run_dir, callbacks=callbacks, show_teacher=config.sdpo.show_teacher if show_teacher is None else show_teacher,
        reward_funcs=reward_funcs,
    )
    if config.method == "sdpo" and config.sdpo.teacher == "ema":
        if world_size() > 1:
            logger.warning("EMA teacher weights are not checkpointed with several processes: --resume restarts the teacher from the student")
        else:
            ema_state = EmaTeacherState(trainer)
            trainer.add_callback(ema_state)
            if checkpoint is not None:
                ema_state.restore(checkpoint)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    wall = time.perf_counter() - started
    trainer.save_model(str(run_dir / "model"))
    summary = summarize(run_dir, wall_time_s=wall, resumed_from=checkpoint)
    write_json(run_dir / "summary.json", summary)
    return summary


def summarize(run_dir: Path, *, wall_time_s: float, resumed_from: Path | None) -> dict[str, Any]:
    rows = read_jsonl(run_dir / "metrics.jsonl")
    evals = read_jsonl(run_dir / "eval.jsonl")
    return {
        "steps": rows[-1].get("step") if rows else 0,
        "wall_time_s": round(wall_time_s, 2),
        "resumed_from": resumed_from.name if resumed_from else None,
        "early_warning_step": rows[-1].get("early_warning_step") if rows else None,  # the monitor carries it in every row
        "distinct_problems_seen": rows[-1].get("distinct_problems_seen") if rows else None,  # training prompts drawn at least once
        "first": rows[0] if rows else None,
        "final": rows[-1] if rows else None,
        "final_eval": evals[-1] if evals else None,
    }


def sft_max_steps(*, steps: int, epochs: float, examples: int, batch: int) -> int:
    """SFT stops at `steps` updates or after `epochs` passes over the data, whichever is first."""
    return max(1, min(steps, math.ceil(epochs * examples / batch)))
