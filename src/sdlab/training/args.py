"""TRL arguments from a recipe: the study's step accounting (prompts x rollouts per step, split
into mini-batch updates) as per-device micro-batches, accumulation and generation batches."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from sdlab import SdlabError
from sdlab.config.schema import TrainConfig


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


def with_checkpointing_name(kwargs: dict[str, Any]) -> dict[str, Any]:
    """`gradient_checkpointing` under the name the installed transformers reads. Version 5
    renamed it `activation_checkpointing` and warns on every config that leaves the new name
    unset, as TRL's configs do (their old-name default is True); the new name wins if both are given."""
    from transformers import TrainingArguments

    if "gradient_checkpointing" not in kwargs or "activation_checkpointing" not in TrainingArguments.__dataclass_fields__:
        return kwargs
    renamed = {key: value for key, value in kwargs.items() if key != "gradient_checkpointing"}
    renamed.setdefault("activation_checkpointing", kwargs["gradient_checkpointing"])
    return renamed


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


def sft_max_steps(*, steps: int, epochs: float, examples: int, batch: int) -> int:
    """SFT stops at `steps` updates or after `epochs` passes over the data, whichever is first."""
    return max(1, min(steps, math.ceil(epochs * examples / batch)))
