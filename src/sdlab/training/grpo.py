"""GRPO baseline on TRL's `GRPOTrainer`, plus the glue both RL trainers share.

    trainer = build_grpo_trainer(model="runs/organism/model", problems=problems, args={"output_dir": "out", "max_steps": 3})
    trainer.train()

What is shared with self-distillation (`sdlab.training.sdpo`): the reward (`math_reward`, sdlab's grader in
TRL's reward-function signature), the dataset layout (`problems_to_dataset`: a conversational
`prompt` column plus `answer`), and the CPU-friendly defaults (`trainer_defaults`). The GRPO
subclass only *reports* (rollouts and per-token entropies for `sdlab.training.callbacks.EpistemicMonitor`);
it changes nothing in the algorithm, so the baseline stays TRL's GRPO.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from sdlab.core.problem import Problem
from sdlab.training.args import with_checkpointing_name
from sdlab.training.callbacks import dispatch, listens, rollout_payload

logger = logging.getLogger(__name__)


def completion_text(completion: Any) -> str:
    """TRL passes completions as strings, or as `[{"role": "assistant", "content": ...}]` for chat prompts."""
    if isinstance(completion, str):
        return completion
    return "".join(message.get("content", "") for message in completion if isinstance(message, dict))


def math_reward(prompts: list[Any], completions: list[Any], answer: list[str], **kwargs: Any) -> list[float]:
    """1.0 when sdlab's grader accepts the completion's final answer against the row's `answer`, else 0.0."""
    from sdlab.core.grading import grade_many

    verdicts = grade_many([completion_text(c) for c in completions], [str(a) for a in answer])
    return [float(v) for v in verdicts]


def problems_to_dataset(problems: Sequence[Problem]) -> Dataset:
    """Problems -> a TRL dataset: `prompt` (the chat messages), `answer`, `problem_id`."""
    if not problems:
        from sdlab import SdlabError

        raise SdlabError("no training problems: the data source is empty (check data.train and data.limit)")
    return Dataset.from_list(
        [{"prompt": [dict(m) for m in p.messages], "answer": str(p.answer), "problem_id": p.id} for p in problems]
    )


def trainer_defaults() -> dict[str, Any]:
    """Defaults applied under the caller's arguments: no external loggers, and on a machine without
    CUDA no bf16 and no gradient checkpointing (TRL's defaults made a tiny-model CPU step ~10x slower)."""
    defaults: dict[str, Any] = {"report_to": "none", "save_strategy": "no", "logging_steps": 1}
    if not torch.cuda.is_available():
        defaults.update(bf16=False, gradient_checkpointing=False, use_cpu=True)
    return defaults


def make_config(config_cls: type, args: dict[str, Any] | Any) -> Any:
    """A TRL config from a kwargs dict (over `trainer_defaults`), or the config object itself."""
    if isinstance(args, dict):
        return config_cls(**with_checkpointing_name(trainer_defaults() | args))
    if not isinstance(args, config_cls):
        raise TypeError(f"args must be a dict or a {config_cls.__name__}, got {type(args).__name__}")
    return args


def problems_drawn(problem_ids: Sequence[str], *, prompts_per_step: int, steps: int, seed: int) -> Counter[str]:
    """How often each distinct problem is drawn as a prompt in `steps` generation batches.

    Runs TRL's `RepeatSampler`, the sampler of both RL trainers, over the dataset's rows: each
    epoch is a fresh seeded shuffle cut into batches of `prompts_per_step`, and an incomplete last
    batch is dropped, so a level whose row count is not a multiple of the batch can miss a few
    problems per epoch. Rows with the same id (`organism:linmod:1x64`) count as one problem.
    """
    from trl.trainer.utils import RepeatSampler

    if prompts_per_step > len(problem_ids):
        raise ValueError(f"{len(problem_ids)} training rows cannot fill one batch of {prompts_per_step} prompts")
    sampler = RepeatSampler(data_source=list(problem_ids), mini_repeat_count=1, batch_size=prompts_per_step, repeat_count=1, shuffle=True, seed=seed)
    drawn: Counter[str] = Counter()
    batches = 0
    while batches < steps:
        order = list(sampler)  # one epoch, as the trainer's dataloader iterates it
        for start in range(0, len(order), prompts_per_step):
            if batches == steps:
                break
            drawn.update(problem_ids[i] for i in order[start : start + prompts_per_step])
            batches += 1
    return drawn


def resolve_dataset(problems: Sequence[Problem] | None, dataset: Dataset | None) -> Dataset:
    if (problems is None) == (dataset is None):
        raise ValueError("pass exactly one of problems= or dataset=")
    return dataset if dataset is not None else problems_to_dataset(problems)


class SdlabGRPOTrainer(GRPOTrainer):
    """TRL's GRPOTrainer, unchanged in what it optimises; it hands each generation batch and the
    per-token entropies of each loss computation to callbacks that listen (`EpistemicMonitor`)."""

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if not self.model.training or not listens(self, "on_rollouts"):
            return rewards_per_func
        rewards = (rewards_per_func * self.reward_weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
        start = self.accelerator.process_index * len(prompts)
        dispatch(
            self,
            "on_rollouts",
            **rollout_payload(
                completions=[completion_text(c) for c in completions],
                completion_ids=completion_ids_list,
                rewards=rewards[start : start + len(prompts)].tolist(),
                inputs=inputs,
                group_size=self.num_generations,
            ),
        )
        return rewards_per_func

    def _get_per_token_logps_and_entropies(self, *args, compute_entropy=False, **kwargs):
        logps, entropies, aux = super()._get_per_token_logps_and_entropies(*args, compute_entropy=compute_entropy, **kwargs)
        if compute_entropy:
            self._last_entropies = entropies
        return logps, entropies, aux

    def _compute_loss(self, model, inputs):
        self._last_entropies = None
        loss = super()._compute_loss(model, inputs)
        if self.model.training and self._last_entropies is not None:
            dispatch(
                self,
                "on_token_stats",
                completion_ids=inputs["completion_ids"].detach().cpu(),
                token_mask=inputs["completion_mask"].detach().cpu(),
                student_entropy=self._last_entropies.detach().float().cpu(),
            )
        return loss


def build_grpo_trainer(
    *,
    model: str,
    args: dict[str, Any] | GRPOConfig,
    problems: Sequence[Problem] | None = None,
    dataset: Dataset | None = None,
    tokenizer: Any = None,
    reward_funcs: Any = None,
    callbacks: list | None = None,
) -> SdlabGRPOTrainer:
    """The GRPO baseline: TRL's GRPOTrainer with `math_reward` on the dataset's `answer` column.

    `args` is a `GRPOConfig` or a dict of its fields (laid over `trainer_defaults()`).
    """
    return SdlabGRPOTrainer(
        model=str(model),
        reward_funcs=reward_funcs if reward_funcs is not None else math_reward,
        args=make_config(GRPOConfig, args),
        train_dataset=resolve_dataset(problems, dataset),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
