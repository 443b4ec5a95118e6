"""Every typed config of sdlab in one place: what each command and recipe may say.

    SamplingConfig      how one reply is sampled (shared by everything that samples to score)
    EvalConfig          `sdlab eval`
    PeriodicEvalConfig  a training run's `eval:` section (curves during training)
    FinalEvalConfig     a sweep's and the demo's `final_eval:` section (every final model)
    TrainConfig         `sdlab train` recipes (GRPO, SDPO, SFT) and its sections
    ProbeConfig         `sdlab probe`
    SweepConfig         `sdlab sweep` files
    (ContextScheduleConfig and RemediesConfig, the remedies' sections of a recipe and a sweep
    file, are in `sdlab.config.remedies` and used here)
    DemoConfig          `sdlab demo` (recipes/demo.yaml)

Every model forbids unknown keys (`StrictModel`); `sdlab.config.load_config` reads a recipe,
applies `key=value` overrides and validates. What pydantic cannot check (files that exist,
provider specs, combinations TRL refuses) is checked in `sdlab.config.checks`.

Step accounting follows the study (verl): one *step* draws `batch` prompts and samples
`rollouts` completions for each; that generation batch is consumed in `batch // mini_batch`
optimizer updates (256 prompts, mini-batch 128 -> 2 updates per step). TRL counts optimizer
updates, so `optimizer_steps = steps * updates_per_step`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, PositiveInt, PrivateAttr, field_validator, model_validator

from sdlab.config import StrictModel
from sdlab.config.remedies import ContextScheduleConfig, RemediesConfig, remedy_problem
from sdlab.config.sources import expand_data_dir
from sdlab.core.contexts import DEFAULT_TEMPLATE, parse_context_names, validate_template
from sdlab.providers import DEFAULT_MODEL

DATA_SECTIONS = ("data", "eval", "sft")  # the recipe sections whose strings may use {data_dir}
DEMO_RENAMED = {"eval_sources": "final_eval.sources", "eval_k": "final_eval.k", "eval_limit": "final_eval.limit",
                "eval_batch_size": "final_eval.batch_size", "eval_max_new_tokens": "final_eval.max_new_tokens"}


class SamplingConfig(StrictModel):
    """How one reply is sampled, for every command that samples replies to score them (eval, the
    periodic and final evaluations, the probe, the demo). Defaults are the study's evaluation
    sampling: temperature 0.6, top-p 0.95, top-k 20."""

    max_new_tokens: PositiveInt = Field(1024, description="longest reply; longer ones are cut and count as truncated")
    temperature: float = Field(0.6, ge=0, description="0 is greedy")
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus mass; 1 switches it off")
    top_k: int = Field(20, ge=0, description="0 switches top-k filtering off")

    def sampling_params(self, *, n: int, seed: int | None):
        """The generator's `SamplingParams` for `n` replies per prompt."""
        from sdlab.evaluation.generation import SamplingParams

        return SamplingParams(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k, max_new_tokens=self.max_new_tokens, n=n, seed=seed)


def sanitize(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "x"


class EvalConfig(SamplingConfig):
    """What `sdlab eval` runs; recipes mirror these keys."""

    model: str = Field(description="local model directory or hub id")
    data: list[str] = Field(min_length=1, description="problem files / data set specs, one metrics entry each")
    k: int = Field(16, ge=1, description="samples per problem")
    out: str = Field(description="run directory")
    enable_thinking: bool | None = Field(None, description="passed to the chat template when set (Qwen3)")
    backend: Literal["auto", "transformers", "vllm"] = "auto"
    limit: int | None = Field(None, ge=1, description="first N problems of each data set")
    batch_size: int = Field(8, ge=1, description="prompts per generation call (x k samples)")
    seed: int = 0

    def sampling(self):
        return self.sampling_params(n=self.k, seed=self.seed)


class FinalEvalConfig(SamplingConfig):
    """`sdlab eval` on every final model (a sweep's cells, the demo's arms and base model): the same
    problems, k and sampling for all."""

    sources: list[str] | None = None  # default: the cells' eval.sources (first = in-distribution)
    k: PositiveInt = 16
    limit: PositiveInt | None = None  # problems per source
    max_new_tokens: PositiveInt = 256
    batch_size: PositiveInt = 8


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
    grpo_blend: float = Field(0.0, ge=0, le=1)  # weight of the policy-gradient term: 1 - lambda in lambda*SDPO + (1-lambda)*GRPO
    # all_sequence_mean: the study's (per-sequence mean over ALL rows of an update, a row without a
    # successful sibling counting 0; independent of runtime.micro_batch). The others are deviations.
    reduction: Literal["all_sequence_mean", "active_sequence_mean", "token_mean"] = "all_sequence_mean"
    max_teacher_prompt_length: PositiveInt = 22528
    # The teacher prompt: `training`, the study's SDPO prompt ({question}\nCorrect solution:\n\n{solution}...);
    # `probe`, the study's probe prompt ({question}\n\nCorrect solution: {solution}...), which the
    # organism's corpus teaches; `trl`, TRL's own templates.
    template: Literal["training", "probe", "trl"] = "training"
    show_teacher: int = Field(2, ge=0)  # teacher inputs of the first batch written to teacher_audit.txt
    # Remedies (docs/remedies.md), each off by default:
    marker_weight: float = Field(1.0, ge=0)  # divergence weight on every piece of an epistemic marker (0 masks)
    divergence_clip: float | None = Field(None, gt=0)  # cap on each token's divergence (OPSD's)
    context_schedule: ContextScheduleConfig | None = None  # each rollout's context, from `start` towards `context`
    distill_rows: Literal["all", "agreeing"] = "all"  # agreeing: only rollouts whose answer agrees with the context's

    @model_validator(mode="after")
    def _check_combinations(self) -> "SdpoConfig":
        if self.distillation == "sampled" and self.alpha != 1.0:
            raise ValueError("distillation=sampled only supports alpha=1.0 (reverse KL on the sampled token); set sdpo.alpha=1.0 or pick full/topk")
        schedule = self.context_schedule
        problem = remedy_problem(context=self.context, marker_weight=self.marker_weight, divergence_clip=self.divergence_clip, distill_rows=self.distill_rows,
                                 schedule_start=schedule and schedule.start, schedule_steps=schedule.steps if schedule else 0, schedule_share=schedule and schedule.share)
        if problem:
            raise ValueError(problem)
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


class PeriodicEvalConfig(SamplingConfig):
    """Periodic ID/OOD evaluation during training (curves, not only end points)."""

    every: int = Field(0, ge=0)  # steps between evaluations; 0 = off
    sources: list[str] = Field(default_factory=list)
    limit: PositiveInt | None = None  # problems per source
    k: PositiveInt = 4  # samples per problem (avg@k, pass@k)
    max_new_tokens: PositiveInt = 256
    at_start: bool = True  # evaluate step 0 too, so every curve has its baseline

    @model_validator(mode="after")
    def _sources_when_enabled(self) -> "PeriodicEvalConfig":
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
    data_dir: str | None = None  # what `{data_dir}` in data paths stands for (docs/training.md#data)
    model: str = DEFAULT_MODEL  # a local dir, a hub id, or a provider's model name (`organism`: the shipped organism; `organism:seed=1`: another build, made once and cached)
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
    eval: PeriodicEvalConfig = Field(default_factory=PeriodicEvalConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @model_validator(mode="before")
    @classmethod
    def _expand_data_dir(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {key: expand_data_dir(value, data.get("data_dir")) if key in DATA_SECTIONS else value for key, value in data.items()}
        return data

    @model_validator(mode="after")
    def _sections_match_method(self) -> "TrainConfig":
        if self.method == "sft" and self.sft is None:
            raise ValueError("method=sft needs an `sft:` section with `dataset:` (a JSONL from `sdlab sft-data`)")
        if self.method != "sft" and self.data is None:
            raise ValueError(f"method={self.method} needs a `data:` section with `train:` (a problem source)")
        if self.method != "sft" and self.rollouts < 2:
            raise ValueError(f"method={self.method} needs rollouts >= 2 (got {self.rollouts}): advantages and SDPO's successful siblings compare the rollouts of one prompt")
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


class ProbeConfig(SamplingConfig):
    """`sdlab probe` settings; sampling defaults are the study's (T 0.6, top-p 0.95, top-k 20)."""

    model: str
    data: str
    out: str
    contexts: list[str] = ["none", "solution", "solution_nothink", "regenerated"]
    n: PositiveInt = 8
    band: tuple[int, int] = (1, 4)  # keep problems with lo <= unguided solve count <= hi of n
    limit_problems: PositiveInt | None = 100  # stop selecting once this many problems are in the band
    split: str = "train"
    solution_source: Literal["own", "reference"] = "own"  # s: the model's own correct sample (the study), or the data's reference solution
    max_prompt_tokens: PositiveInt = 8192  # teacher prompts longer than this lose the middle of their context
    template: str = DEFAULT_TEMPLATE
    alpha: float = Field(0.5, ge=0, le=1)  # divergence: 0 forward KL, 1 reverse KL, 0.5 JSD (the study's)
    entropy_under: Literal["sampling", "model"] = "sampling"  # score samples under q (T, top-k, top-p) or raw p
    # also the gap under the model's own distribution p (temperature 1, no top-k/top-p): a fresh
    # round of n samples per context from p, scored under p (doubles the sampling and scoring)
    model_distribution_gap: bool = True
    enable_thinking: bool | None = None
    backend: Literal["auto", "transformers", "vllm"] = "auto"
    vllm_gpu_memory: float = Field(0.5, gt=0, lt=1)  # vLLM's share of the GPU: scoring needs the rest for its copy of the model
    batch_size: PositiveInt = 8  # prompts per generation call (x n samples)
    score_batch_size: PositiveInt = 8  # responses per scoring forward pass
    heatmap_responses: int = Field(3, ge=0)
    seed: int = 0
    dtype: str | None = None
    device: str | None = None

    @field_validator("contexts", mode="before")
    @classmethod
    def _split_names(cls, value):
        return value.split(",") if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> "ProbeConfig":
        if self.temperature <= 0:
            raise ValueError("temperature must be above 0: the probe scores replies under the sampling distribution, which greedy decoding does not have")
        parse_context_names(self.contexts)
        validate_template(self.template)
        lo, hi = self.band
        if not 0 <= lo <= hi <= self.n:
            raise ValueError(f"band {lo},{hi} must satisfy 0 <= lo <= hi <= n={self.n}")
        return self


class SelectConfig(StrictModel):
    """A selection rule fixed before any result: per group of `per` levels, the `axis` level with
    the highest `metric` (mean over seeds); ties go to the smaller level."""

    axis: str = "lr"
    per: list[str] = Field(default_factory=lambda: ["method"])
    metric: str = "train_reward_last_third"  # mean training reward over the last third of the steps


class SweepConfig(StrictModel):
    name: str = "sweep"
    description: str = ""
    output_dir: str
    recipe: str | None = None  # a training recipe file; `base` keys are applied over it
    base: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any] | dict[str, dict[str, Any]]]
    aggregate_over: list[str] = Field(default_factory=lambda: ["seed"])  # axes averaged (mean, 95% CI)
    # refuse cells whose steps do not draw every distinct training problem at least once (coverage
    # sweeps); otherwise such cells only get a warning
    require_full_coverage: bool = False
    select: SelectConfig | None = None  # e.g. choose each method's learning rate (recipes/sweeps/lr.yaml)
    remedies: RemediesConfig | None = None  # controls, knobs and goal of a remedies sweep (recipes/sweeps/remedies.yaml)
    final_eval: FinalEvalConfig | None = None
    # other sweeps' directories: a cell whose very recipe finished there is copied, not trained again
    reuse: list[str] = Field(default_factory=list)
    # the remedies axis as the file defines it, when a part runs some of its levels (`load_sweep`)
    _remedy_levels: dict[str, dict[str, Any]] | None = PrivateAttr(default=None)

    def recorded_grid(self) -> dict[str, Any]:
        """The grid a sweep directory records: the levels run, except that a remedies axis keeps
        every level its rule names (the ones not run stay pending)."""
        if self.remedies is None or self._remedy_levels is None:
            return self.grid
        return {**self.grid, self.remedies.axis: self._remedy_levels}

    @field_validator("grid")
    @classmethod
    def _axes_not_empty(cls, grid: dict) -> dict:
        if not grid:
            raise ValueError("the grid needs at least one axis, e.g. `method: [grpo, sdpo]`")
        for axis, levels in grid.items():
            if not levels:
                raise ValueError(f"axis {axis!r} has no levels")
            labels = [sanitize(str(level)) for level in levels]
            if len(set(labels)) != len(labels):
                raise ValueError(f"axis {axis!r}: levels {labels} are not distinct as directory names")
        return grid

    @model_validator(mode="after")
    def _selection_names_axes(self) -> "SweepConfig":
        if self.select is not None:
            for axis in (self.select.axis, *self.select.per):
                if axis not in self.grid:
                    raise ValueError(f"select: {axis!r} is not a grid axis (axes: {', '.join(self.grid)})")
            if not isinstance(self.grid[self.select.axis], list):
                raise ValueError(f"select.axis {self.select.axis!r} must be a list of numbers (e.g. lr: [1.0e-5, 1.0e-4])")
        if self.remedies is not None:
            self.remedies.check_levels(self.grid)
        return self


class DemoTrainConfig(StrictModel):
    """One training arm: a recipe file and overrides shared with the other arm."""

    recipe: str
    overrides: list[str] = []


class DemoConfig(StrictModel):
    """What `sdlab demo` runs; `recipes/demo.yaml` mirrors it."""

    out: str = "runs/demo"
    organism_size: str = "tiny"
    seed: int = 0
    probe_recipe: str = "recipes/probe/organism.yaml"
    probe_overrides: list[str] = []
    arms: dict[str, DemoTrainConfig] = Field(min_length=1)
    shared_overrides: list[str] = Field(default_factory=list, description="applied to every arm: equal budget by construction")
    final_eval: FinalEvalConfig = Field(description="the base model and every arm: sources (first = in distribution, the rest out of distribution), k, limit, sampling")
    lanes: PositiveInt = Field(2, description="processes running probe, training and evaluation side by side (1 = one process, every stage in order)")
    threads: PositiveInt = Field(1, description="torch threads of each process that runs stages (with lanes=1 on an idle 2-core machine, 2)")

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for old in [key for key in DEMO_RENAMED if key in data]:
                raise ValueError(f"{old} is now {DEMO_RENAMED[old]} (the final evaluation shares the sweeps' final_eval section); rename the key")
        return data

    @model_validator(mode="after")
    def _final_eval_has_sources(self) -> "DemoConfig":
        if not self.final_eval.sources:
            raise ValueError("final_eval.sources is empty; list the evaluation sets (first = in distribution)")
        return self
