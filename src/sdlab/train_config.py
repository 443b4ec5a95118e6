"""`TrainConfig`: one typed recipe for GRPO, SDPO and SFT runs, checked before any work starts.

    sdlab validate recipes/organism/sdpo_solution.yaml steps=5

Schema errors (unknown key, wrong type, unknown method or context) come from pydantic via
`sdlab.config.load_config`, naming the key path and the allowed values. `check_paths` then
checks what pydantic cannot: that data files and the model directory exist.

Step accounting follows the study (verl): one *step* draws `batch` prompts and samples
`rollouts` completions for each; that generation batch is consumed in `batch // mini_batch`
optimizer updates (256 prompts, mini-batch 128 -> 2 updates per step). TRL counts optimizer
updates, so `optimizer_steps = steps * updates_per_step`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from sdlab import SdlabError
from sdlab.config import StrictModel, load_config

ORGANISM = "organism"
DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".arrow", ".csv")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class DataConfig(StrictModel):
    """Training problems: a parquet/JSONL path, a datasets dir or hub id, or `organism:FAMILY:N`."""

    train: str
    limit: PositiveInt | None = None


class SdpoConfig(StrictModel):
    """Self-distillation: the student on x, the same model as teacher on x + context c."""

    # solution: a successful sibling rollout (think kept); solution_nothink: the same with its
    # think block removed; regenerated: the teacher's own answer given the solution (y~);
    # feedback: environment feedback only (privileged context column).
    context: Literal["solution", "solution_nothink", "regenerated", "feedback"] = "solution"
    teacher: Literal["fixed", "ema"] = "fixed"
    ema_rate: float = Field(0.05, gt=0, le=1)
    distillation: Literal["full", "topk", "sampled"] = "topk"
    topk: PositiveInt = 100
    tail: bool = True  # top-k + one bucket for the remaining mass (the study's "top-100 + tail")
    alpha: float = Field(0.5, ge=0, le=1)  # generalised JSD interpolation; 1.0 = reverse KL
    success_threshold: float = 0.5
    grpo_blend: float = Field(0.0, ge=0, le=1)  # weight of the policy-gradient term
    # all_sequence_mean: the study's (per-sequence mean over ALL rows of an update, a row without a
    # successful sibling counting 0; independent of runtime.micro_batch). The others are deviations.
    reduction: Literal["all_sequence_mean", "active_sequence_mean", "token_mean"] = "all_sequence_mean"
    max_teacher_prompt_length: PositiveInt = 22528
    # The teacher prompt: `training`, the study's SDPO prompt ({question}\nCorrect solution:\n\n{solution}...);
    # `probe`, the study's probe prompt ({question}\n\nCorrect solution: {solution}...), which the
    # organism's corpus teaches; `trl`, TRL's own templates.
    template: Literal["training", "probe", "trl"] = "training"
    show_teacher: int = Field(2, ge=0)  # teacher inputs of the first batch written to teacher_audit.txt

    @model_validator(mode="after")
    def _sampled_needs_reverse_kl(self) -> "SdpoConfig":
        if self.distillation == "sampled" and self.alpha != 1.0:
            raise ValueError("distillation=sampled only supports alpha=1.0 (reverse KL on the sampled token); set sdpo.alpha=1.0 or pick full/topk")
        return self


class SftCollectConfig(StrictModel):
    """How to collect `sft.dataset` when it does not exist yet (same as `sdlab sft-data`)."""

    data: str  # problem source
    mode: Literal["unguided", "guided"] = "unguided"
    n_correct: PositiveInt = 800
    max_attempts: PositiveInt = 8  # samples per problem before giving up on it
    max_new_tokens: PositiveInt = 256
    temperature: float = Field(0.6, ge=0)


class SftConfig(StrictModel):
    """Off-policy SFT on collected traces (`sdlab sft-data` output, chat-format JSONL)."""

    dataset: str
    epochs: float = Field(1.0, gt=0)
    max_length: PositiveInt = 2048
    collect: SftCollectConfig | None = None  # collect the dataset first when it is missing


class EvalConfig(StrictModel):
    """Periodic ID/OOD evaluation during training (curves, not only end points)."""

    every: int = Field(0, ge=0)  # steps between evaluations; 0 = off
    sources: list[str] = Field(default_factory=list)
    limit: PositiveInt | None = None  # problems per source
    k: PositiveInt = 4  # samples per problem (avg@k, pass@k)
    max_new_tokens: PositiveInt = 256
    temperature: float = Field(0.6, ge=0)
    at_start: bool = True  # evaluate step 0 too, so every curve has its baseline

    @model_validator(mode="after")
    def _sources_when_enabled(self) -> "EvalConfig":
        if self.every and not self.sources:
            raise ValueError("eval.every is set but eval.sources is empty; list the ID/OOD sources to evaluate")
        return self


class VllmConfig(StrictModel):
    enabled: bool = False
    mode: Literal["colocate", "server"] = "colocate"
    gpu_memory_utilization: float = Field(0.3, gt=0, le=1)
    tensor_parallel_size: PositiveInt = 1
    server_base_url: str | None = None
    max_model_length: PositiveInt | None = None
    enable_sleep_mode: bool = False


class RuntimeConfig(StrictModel):
    """Device and precision. The defaults suit the CPU organism runs (TRL's own defaults,
    bf16 + gradient checkpointing, made a tiny-model CPU step about 10x slower)."""

    use_cpu: bool = True
    bf16: bool = False
    gradient_checkpointing: bool = False
    micro_batch: PositiveInt | None = None  # completions per forward pass per device; None = a whole mini-batch
    dataloader_num_workers: int = Field(0, ge=0)
    # torch CPU threads; None = torch's default. On a shared 2-core machine 1 thread made organism
    # generation ~30x faster than 2 (contended threads spin-wait); on an idle one 2 were 1.2-1.4x
    # faster than 1. See docs/measurements.md#generation.
    threads: PositiveInt | None = None
    vllm: VllmConfig = Field(default_factory=VllmConfig)


class LoggingConfig(StrictModel):
    report_to: Literal["none", "trackio", "tensorboard", "wandb"] = "none"
    logging_steps: PositiveInt = 1
    samples_per_step: int = Field(4, ge=0)  # rollouts written to samples.jsonl per logged step


class TrainConfig(StrictModel):
    method: Literal["grpo", "sdpo", "sft"]
    model: str = ORGANISM  # a local dir, a hub id, or `organism` (the default organism, built on demand)
    output_dir: str
    seed: int = 0
    steps: PositiveInt = 50  # generation batches (SFT: optimizer steps; epochs bound it too)
    lr: float = Field(1e-5, gt=0)
    # The optimiser and policy-loss defaults are the study's (docs/decisions.md#the-studys-optimiser):
    # AdamW, weight decay 0.01, 10 warmup steps then a constant rate.
    lr_scheduler: Literal["constant", "linear", "cosine", "constant_with_warmup"] = "constant_with_warmup"
    warmup_steps: int = Field(10, ge=0)  # in steps (generation batches), like `steps`
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    # Advantage = reward - group mean, divided by: nothing (`none`, the study's), the group's std
    # (`group`, TRL's default) or the batch's std (`batch`). GRPO and SDPO's grpo_blend term.
    scale_rewards: Literal["none", "group", "batch"] = "none"
    epsilon_low: float = Field(0.2, gt=0, lt=1)  # ratio clip 1 - epsilon_low (the study's 0.2)
    epsilon_high: float = Field(0.28, gt=0)  # ratio clip 1 + epsilon_high (the study's clip-higher 0.28)
    # Policy-loss reduction (TRL's loss_type). `grpo`: per-sequence mean over all rows of an update,
    # what the study's micro-batch-1 verl runs compute; `dapo` (TRL's default): tokens of the batch.
    loss_type: Literal["grpo", "dapo", "bnpo", "dr_grpo"] = "grpo"
    # Token-level importance-sampling weights min(pi_train / pi_rollout, cap) (the study: 2.0; None:
    # off). GRPO: TRL's vLLM correction (acts only with runtime.vllm); SDPO: the distillation loss's
    # `distillation_is_clip` (acts only when one generation batch feeds several updates).
    importance_sampling_cap: float | None = Field(2.0, gt=1)
    batch: PositiveInt = 8  # prompts per step (SFT: examples per optimizer step)
    mini_batch: PositiveInt | None = None  # prompts per optimizer update; None = batch
    rollouts: PositiveInt = 8  # completions per prompt
    max_prompt_length: PositiveInt = 512
    max_completion_length: PositiveInt = 256
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    enable_thinking: bool | None = None  # chat-template switch (Qwen3); None = the template's default
    save_steps: PositiveInt = 10  # checkpoint every N optimizer updates
    save_total_limit: PositiveInt | None = 2
    data: DataConfig | None = None
    sdpo: SdpoConfig = Field(default_factory=SdpoConfig)
    sft: SftConfig | None = None
    eval: EvalConfig = Field(default_factory=EvalConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @model_validator(mode="after")
    def _sections_match_method(self) -> "TrainConfig":
        if self.method == "sft" and self.sft is None:
            raise ValueError("method=sft needs an `sft:` section with `dataset:` (a JSONL from `sdlab sft-data`)")
        if self.method != "sft" and self.data is None:
            raise ValueError(f"method={self.method} needs a `data:` section with `train:` (a problem source)")
        if self.mini_batch is not None and self.batch % self.mini_batch:
            raise ValueError(f"batch ({self.batch}) must be a multiple of mini_batch ({self.mini_batch})")
        if self.warmup_steps and self.lr_scheduler == "constant":
            raise ValueError(f"lr_scheduler=constant ignores warmup_steps={self.warmup_steps}; use lr_scheduler=constant_with_warmup, or warmup_steps=0")
        return self

    @property
    def updates_per_step(self) -> int:
        return 1 if self.method == "sft" or self.mini_batch is None else self.batch // self.mini_batch

    @property
    def optimizer_steps(self) -> int:
        return self.steps * self.updates_per_step

    @property
    def longest_sequence(self) -> int:
        """Tokens in the longest sequence a forward pass sees: the SDPO teacher's prompt + the
        student's completion, or the student's own prompt + completion (or evaluation answer)."""
        prompt = self.max_prompt_length
        if self.method == "sdpo":
            prompt = max(prompt, self.sdpo.max_teacher_prompt_length)
        return max(prompt + self.max_completion_length, self.max_prompt_length + (self.eval.max_new_tokens if self.eval.every else 0))


def load_train_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Recipe + `key=value` overrides -> validated config, with file paths checked."""
    config = load_config(TrainConfig, path, overrides)
    check_paths(config, source=str(path) if path else "overrides")
    return config


def _check_source(spec: str, key: str, source: str) -> None:
    if spec.startswith("organism:") or Path(spec).exists():
        return
    if spec.endswith(DATA_SUFFIXES) or spec.startswith((".", "/", "~")) or not HUB_ID.match(spec):
        raise SdlabError(f"{source}: {key}: {spec!r} not found (paths are relative to the directory you run sdlab from: {Path.cwd()})")


def check_paths(config: TrainConfig, *, source: str = "config") -> None:
    """Fail before any work when a data file or local model directory is missing.
    Hub ids (`org/name`) pass: they can only be checked by downloading."""
    if config.model != ORGANISM:
        _check_source(config.model, "model", source)
    if config.data is not None:
        _check_source(config.data.train, "data.train", source)
    for index, spec in enumerate(config.eval.sources):
        _check_source(spec, f"eval.sources.{index}", source)
    if config.sft is not None and config.sft.collect is not None:
        _check_source(config.sft.collect.data, "sft.collect.data", source)
    elif config.sft is not None and not Path(config.sft.dataset).is_file():
        raise SdlabError(f"{source}: sft.dataset: {config.sft.dataset!r} not found; collect it first with `sdlab sft-data ... --out {config.sft.dataset}`")
