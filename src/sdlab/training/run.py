"""`sdlab train`: one recipe -> one run directory with metrics, samples, checkpoints and a summary.

    sdlab train recipes/organism/sdpo_solution.yaml steps=60 --force
    accelerate launch --config_file recipes/accelerate/zero3.yaml -m sdlab.cli train recipes/models/qwen3-8b/sdpo.yaml

This module only orchestrates: the trainers come from `sdlab.training.grpo` (TRL's GRPOTrainer, the
baseline), `sdlab.training.sdpo` (sdlab's subclass of TRL's SDPOTrainer) and `sdlab.training.sft` (TRL's
SFTTrainer); the per-step epistemic metrics from `sdlab.training.callbacks.EpistemicMonitor`.

Run directory: `config.yaml` (resolved), `versions.json`, `metrics.jsonl` (one row per logged
step), `eval.jsonl` (periodic ID/OOD evaluation), `samples.jsonl`, `checkpoint-N/`
(safetensors + optimizer + RNG state, what `--resume` continues from), `model/` (final
weights), `summary.json`, and for SDPO `teacher_audit.{jsonl,txt}` (what the teacher saw).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdlab import SdlabError
from sdlab.config.schema import TrainConfig
from sdlab.core.io import read_jsonl, run_dir_setup, write_json, write_run_header
from sdlab.evaluation.generation import check_model_source
from sdlab.providers import missing_abilities, resolve_model, trained_window
from sdlab.training.args import apply_threads, batch_layout, common_args, grpo_importance_sampling_args, rollout_args, sft_max_steps, world_size
from sdlab.training.callbacks import PeriodicEval, SampleWriter, TeacherAuditEcho
from sdlab.training.checkpoints import EmaTeacherState, check_resumable, check_same_model, checkpoint_step, export_model, training_finished, truncate_step_logs

logger = logging.getLogger(__name__)

def check_runtime(config: TrainConfig) -> None:
    """A GPU recipe on a machine without CUDA, or a vLLM recipe without vLLM, stops here with
    the overrides that run it, not in transformers' or TRL's argument checks after the run
    directory exists."""
    import torch

    from sdlab.evaluation.generation import vllm_available

    runtime = config.runtime
    if not runtime.use_cpu and not torch.cuda.is_available():
        raise SdlabError("runtime.use_cpu is false (a GPU recipe) but torch sees no CUDA device; "
                         "to run it on this machine pass runtime.use_cpu=true runtime.bf16=false" + (" runtime.vllm.enabled=false" if runtime.vllm.enabled else ""))
    if runtime.vllm.enabled and not vllm_available():
        raise SdlabError("runtime.vllm.enabled needs vLLM and a CUDA device (pip install 'sdlab[vllm]'); pass runtime.vllm.enabled=false to generate with transformers")


def check_window(config: TrainConfig, model_path: str) -> None:
    """Warn when a sequence can outgrow the window a built model was pretrained on: beyond the
    longest distance it was trained on, its next-token distribution degrades
    (docs/organism.md#window), and an SDPO teacher's signal there is noise."""
    window = trained_window(model_path)
    if window and config.longest_sequence > window:
        logger.warning("%s: sequences of up to %d tokens, but this model was pretrained on %d-token windows; "
                       "lower max_completion_length / sdpo.max_teacher_prompt_length or build the model with longer windows",
                       config.output_dir, config.longest_sequence, window)


def warn_missing_abilities(config: TrainConfig, model_path: str) -> None:
    """Warn when a model's build judged its draw to lack an ability the experiments rely on
    (docs/organism.md): a sweep on such a draw measures its breakage, not the method."""
    for ability in missing_abilities(model_path):
        logger.warning("%s: the model %s lacks %s (its README.md, Health)", config.output_dir, model_path, ability)


def build_trainer(config: TrainConfig, *, model_path: str, run_dir: Path, callbacks: list, show_teacher: int, reward_funcs: Any = None):
    """The TRL trainer for `config.method`, writing checkpoints (and SDPO's teacher audit) to `run_dir`."""
    output_dir = run_dir
    if config.method == "sft":
        from sdlab.training.sft import build_sft_trainer, load_sft_dataset

        dataset = load_sft_dataset(config.sft.dataset)
        micro, accumulation = batch_layout(completions_per_update=config.batch, micro_batch=config.runtime.micro_batch, processes=world_size())
        max_steps = sft_max_steps(steps=config.steps, epochs=config.sft.epochs, examples=len(dataset), batch=config.batch)
        args = common_args(config, output_dir=output_dir, max_steps=max_steps) | dict(
            per_device_train_batch_size=micro, gradient_accumulation_steps=accumulation, max_length=config.sft.max_length
        )
        return build_sft_trainer(model=model_path, dataset=dataset, args=args, callbacks=callbacks)
    from sdlab.core.data import load_problems
    from sdlab.training.grpo import build_grpo_trainer
    from sdlab.training.sdpo import build_sdpo_trainer

    problems = load_problems(config.data.train, limit=config.data.limit)
    args = common_args(config, output_dir=output_dir, max_steps=config.optimizer_steps) | rollout_args(config, processes=world_size())
    if config.method == "grpo":
        args |= grpo_importance_sampling_args(config.importance_sampling_cap)
        return build_grpo_trainer(model=model_path, problems=problems, args=args, callbacks=callbacks, reward_funcs=reward_funcs)
    args["max_prompt_length"] = config.max_prompt_length  # TRL 1.16's GRPOConfig has no prompt truncation
    # the `sdpo:` section's keys are build_sdpo_trainer's keyword arguments, one for one
    return build_sdpo_trainer(model=model_path, problems=problems, args=args, callbacks=callbacks, reward_funcs=reward_funcs,
                              **config.sdpo.model_dump(exclude={"show_teacher"}), is_clip=config.importance_sampling_cap, show_teacher=show_teacher)


def run_training(
    config: TrainConfig,
    *,
    resume: bool = False,
    force: bool = False,
    show_teacher: int | None = None,
    on_teacher_audit: Callable[[str], None] | None = None,
    extra_callbacks: list | None = None,
    reward_funcs: Any = None,
    start_eval_cache: Path | None = None,
) -> dict[str, Any]:
    """Train `config` into `config.output_dir`; returns (and writes) the run summary.

    `show_teacher` overrides `sdpo.show_teacher` (teacher inputs audited per batch);
    `on_teacher_audit` receives the rendered audit once the first batch has been trained on;
    `reward_funcs` replaces the 0/1 math reward (TRL's reward-function signature);
    `start_eval_cache` is a directory where the step-0 evaluation is shared between runs
    (a sweep's cells: `PeriodicEval`)."""
    from transformers import set_seed

    from sdlab.training.callbacks import EpistemicMonitor, report_first

    check_runtime(config)
    if config.warmup_steps and config.lr_scheduler != "constant" and config.warmup_steps >= config.steps:
        logger.warning("%s: warmup_steps=%d >= steps=%d: the learning rate never reaches lr=%g", config.output_dir, config.warmup_steps, config.steps, config.lr)
    with run_dir_setup(config.output_dir, force=force, resume=resume) as run_dir:  # a refused set-up leaves no directory
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
        check_model_source(model_path)  # a hub id with no hub to answer fails now, not after TRL's retries
        check_same_model(run_dir, model_path, resuming=checkpoint is not None)
        check_window(config, model_path)
        warn_missing_abilities(config, model_path)
        if config.method == "sft" and config.sft.collect is not None and not Path(config.sft.dataset).is_file():
            from sdlab.training.sft import collect_sft_data

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
            callbacks.append(PeriodicEval(path=run_dir / "eval.jsonl", config=config.eval, every=config.eval.every * config.updates_per_step, enable_thinking=config.enable_thinking,
                                          seed=config.seed, model_path=model_path, start_cache=start_eval_cache))
        trainer = build_trainer(config, model_path=model_path, run_dir=run_dir, callbacks=callbacks, show_teacher=config.sdpo.show_teacher if show_teacher is None else show_teacher,
            reward_funcs=reward_funcs,
        )
        report_first(trainer, monitor)
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
    """The run's summary. `wall_time_s` is this sitting's; a resumed run's summary counts every
    sitting, from the monitor's `elapsed_s` (up to the last logged step)."""
    rows = read_jsonl(run_dir / "metrics.jsonl")
    evals = read_jsonl(run_dir / "eval.jsonl")
    return {
        "steps": rows[-1].get("step") if rows else 0,
        "wall_time_s": round(rows[-1].get("elapsed_s", wall_time_s) if rows and resumed_from else wall_time_s, 2),
        "resumed_from": resumed_from.name if resumed_from else None,
        "early_warning_step": rows[-1].get("early_warning_step") if rows else None,  # the monitor carries it in every row
        "distinct_problems_seen": rows[-1].get("distinct_problems_seen") if rows else None,  # training prompts drawn at least once
        "first": rows[0] if rows else None,
        "final": rows[-1] if rows else None,
        "final_eval": evals[-1] if evals else None,
    }
