"""Self-distillation on TRL's experimental SDPOTrainer: the one place where sdlab subclasses and fixes it.

    trainer = build_sdpo_trainer(model="runs/organism/model", problems=problems, args={"output_dir": "out", "max_steps": 3})
    trainer.train()

The student answers x; the teacher (the same model: fixed initial weights, or an EMA) scores the
student's own response given x + c, where c is a successful sibling rollout (`solution`), the
same without its think block (`solution_nothink`), the policy's own answer when shown that
solution (`regenerated`), or environment feedback (`feedback`). The loss is a per-token
divergence on the response (sdlab.core.losses). Defaults are the study's settings (fixed teacher,
JSD alpha 0.5, top-100 + tail, success threshold 0.5, no reprompt on a rollout's own success).

What differs from plain TRL (trl==1.16.0; each in docs/decisions.md with the test that shows it):
- the teacher prompt is sdlab's template (`sdlab.core.contexts`), and a prompt over `max_reprompt_len`
  is shortened by cutting the middle of the *solution*, never the question (TRL keeps the last tokens);
- the distillation loss reduction is chosen (`distillation_reduction`); the default is the study's
  and TRL's `all_sequence_mean` (per-sequence means averaged over ALL rows, a row with no teacher
  context counting 0), which does not depend on the micro-batch size;
- `beta` (unused by TRL's SDPO) must be 0; the fixed/EMA teacher is checked to equal the student;
- full-vocabulary distillation is computed in checkpointed chunks (same values, bounded memory);
- the teacher reads only rows with a distillation loss, and each distinct teacher prompt once (same loss);
- rollouts, per-token divergences/entropies and a teacher-input audit are reported;
- the remedies (docs/remedies.md), each off by default: `marker_weight` on epistemic-marker tokens,
  `divergence_clip` per token, a richness schedule between `solution_nothink` and `solution`
  chosen per rollout, and `distill_rows: agreeing` (only rollouts that succeed themselves).
The GRPO baseline is TRL's GRPOTrainer (`sdlab.training.grpo`), not this class with distillation weight 0:
the two normalise the `dapo` loss differently.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from trl.experimental.sdpo import SDPOConfig, SDPOTrainer
from trl.experimental.sdpo.sdpo_trainer import DistillationLogits, _extract_last_user_text

from sdlab import SdlabError
from sdlab.config.remedies import remedy_problem
from sdlab.core.contexts import TEMPLATES, TRAINING_TEMPLATE, validate_template
from sdlab.core.io import append_jsonl
from sdlab.core.losses import (
    Reduction,
    agg_loss,
    agreeing_rows,
    chunked_full_vocab_divergence,
    clip_divergence,
    clipped_importance_weight,
    entropy_from_logits,
    masked_mean,
    sampled_token_log_ratio,
    sampled_token_loss,
    scatter_rows,
    token_log_probs,
    topk_tail_divergence,
    weight_marker_tokens,
)
from sdlab.core.problem import Problem
from sdlab.training.audit import audit_sample, render_audit
from sdlab.training.callbacks import dispatch, listens, marker_occurrences_for, rollout_payload
from sdlab.training.grpo import build_grpo_trainer, make_config, math_reward, resolve_dataset  # build_grpo_trainer: re-exported for sdlab.training.run
from sdlab.training.teacher_context import CUT_MARK, FEEDBACK_TEMPLATE, TRL_TEMPLATES, QuestionSafeContextBuilder, format_teacher_prompt  # noqa: F401 - CUT_MARK, format_teacher_prompt: this module's interface too
from sdlab.training.teacher_forward import shared_prompt_logits

__all__ = ["SdlabSDPOConfig", "SdlabSDPOTrainer", "build_sdpo_trainer", "build_grpo_trainer", "format_teacher_prompt"]

logger = logging.getLogger(__name__)

CONTEXTS = ("solution", "solution_nothink", "regenerated", "feedback")
ALIASES = {"fixed": "base", "full": "full_logits", "topk": "topk_logits", "sampled": "sampled_token"}


@dataclass
class SdlabSDPOConfig(SDPOConfig):
    """TRL's SDPOConfig with the study's defaults and sdlab's switches.

    `context` owns TRL's `use_successful_as_teacher`, `include_environment_feedback`,
    `remove_thinking_from_demonstration` and template fields; `teacher_model_kind` also takes
    `fixed` (= TRL's `base`), `distillation_mode` also `full`/`topk`/`sampled`.
    """

    context: str = field(default="solution", metadata={"help": f"Teacher context: one of {', '.join(CONTEXTS)}."})
    teacher_template: str = field(default=TRAINING_TEMPLATE, metadata={"help": "Teacher prompt with {question} and {solution} (default: the study's training prompt), 'probe' or 'training' for the study's two, or 'trl' for TRL's templates."})
    feedback_teacher_template: str = field(default=FEEDBACK_TEMPLATE, metadata={"help": "Teacher prompt with {question} and {feedback}."})
    distillation_reduction: str = field(default="all_sequence_mean", metadata={"help": "all_sequence_mean (the study's and TRL's), active_sequence_mean or token_mean."})
    distillation_chunk_tokens: int = field(default=512, metadata={"help": "Positions per checkpointed chunk of the full-vocabulary divergence."})
    regenerated_samples: int = field(default=8, metadata={"help": "context=regenerated: responses sampled given (x, s); y~ is the first correct one, else the first (the study's 8)."})
    show_teacher: int = field(default=2, metadata={"help": "Samples per generation batch written to teacher_audit.jsonl/.txt (0: none)."})
    show_teacher_steps: int = field(default=1, metadata={"help": "How many generation batches are audited."})
    audit_dir: str | None = field(default=None, metadata={"help": "Where teacher_audit.jsonl/.txt go (default: output_dir)."})
    monitor_entropy: bool = field(default=True, metadata={"help": "Compute student/teacher per-token entropy for EpistemicMonitor."})
    # Remedies (docs/remedies.md); each default leaves the loss as it is.
    marker_weight: float = field(default=1.0, metadata={"help": "Weight of the divergence on every piece of an epistemic-marker occurrence (0 masks it)."})
    divergence_clip: float | None = field(default=None, metadata={"help": "Cap on each token's divergence (OPSD's clip); None: off."})
    context_schedule_start: str | None = field(default=None, metadata={"help": "Richness schedule: the context rollouts start from (solution or solution_nothink); `context` is where it ends. None: off."})
    context_schedule_steps: int = field(default=0, metadata={"help": "Generation batches over which the share of rollouts given `context` goes linearly from 0 to 1."})
    context_schedule_share: float | None = field(default=None, metadata={"help": "A fixed share of rollouts given `context` (a constant mix) instead of the ramp."})
    distill_rows: str = field(default="all", metadata={"help": "all, or agreeing: distil only rollouts that succeed themselves, i.e. agree with the context's answer."})
    teacher_model_kind: str = "base"
    distillation_mode: str = "topk_logits"
    distillation_topk: int | None = 100
    distillation_add_tail: bool = True
    distillation_alpha: float = 0.5
    success_reward_threshold: float = 0.5

    def __post_init__(self):
        self.teacher_model_kind = ALIASES.get(self.teacher_model_kind, self.teacher_model_kind)
        self.distillation_mode = ALIASES.get(self.distillation_mode, self.distillation_mode)
        if self.beta != 0.0:
            raise SdlabError(f"beta={self.beta}: TRL's SDPOTrainer stores beta but applies no KL-to-reference penalty; set beta=0 (sdlab does not add one)")
        if self.context not in CONTEXTS:
            raise SdlabError(f"context={self.context!r}: allowed {', '.join(CONTEXTS)}")
        if self.teacher_model_kind not in ("base", "ema", "live"):
            raise SdlabError(f"teacher_model_kind={self.teacher_model_kind!r}: allowed fixed (= base), ema, live")
        if self.distillation_mode == "topk_logits" and not self.distillation_topk:
            raise SdlabError("distillation_mode=topk needs distillation_topk (the study: 100)")
        problem = remedy_problem(context=self.context, marker_weight=self.marker_weight, divergence_clip=self.divergence_clip, distill_rows=self.distill_rows,
                                 schedule_start=self.context_schedule_start, schedule_steps=self.context_schedule_steps, schedule_share=self.context_schedule_share)
        if problem:
            raise SdlabError(problem)
        try:
            Reduction(self.distillation_reduction)
        except ValueError:
            raise SdlabError(f"distillation_reduction={self.distillation_reduction!r}: allowed {', '.join(r.value for r in Reduction)}") from None
        self.teacher_template = TEMPLATES.get(self.teacher_template, self.teacher_template)
        if self.teacher_template != TRL_TEMPLATES:
            validate_template(self.teacher_template)
        # sdlab formats the teacher prompt itself (format_teacher_prompt); TRL hands it raw pieces.
        self.use_successful_as_teacher = self.context != "feedback"
        self.include_environment_feedback = self.context == "feedback"
        self.remove_thinking_from_demonstration = False
        self.solution_template, self.feedback_template = "{successful_previous_attempt}", "{feedback_raw}"
        super().__post_init__()


@dataclass
class RowSubsetLogits(DistillationLogits):
    """TRL's aligned logits, with the teacher's for some batch rows only: `teacher_logits` [A, T, V]
    belong to rows `teacher_rows` [A] of the student's [B, T, V] (None: all B rows)."""

    teacher_rows: torch.Tensor | None = None


class SdlabSDPOTrainer(SDPOTrainer):
    """TRL's SDPOTrainer with sdlab's fixes and reporting (module docstring); takes `SdlabSDPOConfig`."""

    config_cls = SdlabSDPOConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, SdlabSDPOConfig):
            raise TypeError(f"SdlabSDPOTrainer needs an SdlabSDPOConfig, got {type(self.args).__name__}")
        self.teacher_context_builder = QuestionSafeContextBuilder(self)
        self._batch_inputs: list[dict] = []
        self._audited_batches = 0
        if self.args.distillation_weight == 0.0:
            logger.warning("distillation_weight=0 is TRL's SDPO policy loss, not GRPOTrainer (different dapo normalisation); use sdlab.training.grpo.build_grpo_trainer for the GRPO baseline")

    # -- teacher ------------------------------------------------------------------------------
    def _setup_teacher_model(self) -> None:
        """TRL rebuilds a fixed/EMA teacher from `config._name_or_path`: make sure that is the student."""
        source = getattr(self.model.config, "_name_or_path", "")
        try:
            super()._setup_teacher_model()
        except OSError as err:
            raise SdlabError(f"the {self.args.teacher_model_kind} teacher is rebuilt from the student's path {source!r}, which could not be loaded ({err}); save the student with save_pretrained and pass that directory") from None
        if self.teacher_model is self.model or self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return
        teacher_state = self.accelerator.unwrap_model(self.teacher_model).state_dict()
        for name, value in self.accelerator.unwrap_model(self.model).state_dict().items():
            other = teacher_state.get(name)
            if other is None or not torch.equal(value, other.to(value.device, value.dtype)):
                raise SdlabError(
                    f"the {self.args.teacher_model_kind} teacher was rebuilt from {source!r} but its weights differ from the student's ({name}); "
                    "the student must be exactly what is saved there: save it with save_pretrained and pass that directory as the model"
                )

    # -- rollouts, regenerated contexts, audit ----------------------------------------------------
    def _prepare_training_batch(self, inputs):
        self._batch_inputs = inputs
        batch = super()._prepare_training_batch(inputs)
        if self.args.distill_rows == "agreeing":
            batch["self_distillation_mask"] = agreeing_rows(batch["self_distillation_mask"], batch["rewards"], threshold=self.args.success_reward_threshold)
            self._metrics["train" if self.model.training else "eval"]["sdlab/distilled_row_fraction"].append(float(batch["self_distillation_mask"].float().mean()))
        if self.model.training and listens(self, "on_rollouts"):
            ids = self._get_completion_ids_list(batch)
            dispatch(
                self,
                "on_rollouts",
                **rollout_payload(
                    completions=self.processing_class.batch_decode(ids, skip_special_tokens=True),
                    completion_ids=ids,
                    rewards=batch["rewards"].tolist(),
                    inputs=inputs,
                    group_size=self.num_generations,
                ),
            )
        if self.model.training:
            self._write_audit(batch, inputs)
        return batch

    def generate_once(self, prompt_ids: list[list[int]]) -> list[list[int]]:
        """One completion per prompt with the current policy (the `regenerated` round)."""
        if self.use_vllm:
            return self.vllm_generation.generate(prompts=prompt_ids, images=None, num_generations=1)[1]
        return self._generate_transformers(prompt_ids)[1]

    def score_completions(self, rows: list[dict], texts: list[str], completion_ids: list[list[int]]) -> list[bool]:
        """Reward functions on completions of `rows`' prompts; True where the reward reaches the success threshold."""
        prompts = [row["prompt"] for row in rows]
        completions = [[{"role": "assistant", "content": t}] for t in texts] if isinstance(prompts[0], list) else texts
        columns = {key: [row[key] for row in rows] for key in rows[0] if key not in ("prompt", "completion", "completion_ids")}
        total = torch.zeros(len(rows))
        for func, weight in zip(self.reward_funcs, self.reward_weights.tolist()):
            if isinstance(func, torch.nn.Module):
                raise SdlabError("context=regenerated grades y~ with the reward functions; a reward model is not supported, pass a reward function")
            scores = func(prompts=prompts, completions=completions, completion_ids=completion_ids, trainer_state=self.state, **columns)
            total += weight * torch.tensor([0.0 if s is None else float(s) for s in scores])
        return (total >= self.args.success_reward_threshold).tolist()

    def _write_audit(self, batch, inputs) -> None:
        if self.args.show_teacher <= 0 or self._audited_batches >= self.args.show_teacher_steps or not self.accelerator.is_main_process:
            return
        self._audited_batches += 1
        sd_mask = batch["self_distillation_mask"]
        order = sorted(range(len(inputs)), key=lambda i: -float(sd_mask[i]))[: self.args.show_teacher]  # active rows first
        out = Path(self.args.audit_dir or self.args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        for i in order:
            prompt = inputs[i]["prompt"]
            record = audit_sample(
                self.processing_class,
                student_ids=torch.cat([batch["prompt_ids"][i], batch["completion_ids"][i]]).tolist(),
                student_mask=torch.cat([batch["prompt_mask"][i], batch["completion_mask"][i]]).tolist(),
                teacher_ids=batch["teacher_input_ids"][i].tolist(),
                teacher_mask=batch["teacher_attention_mask"][i].tolist(),
                loss_mask=(batch["completion_mask"][i] * sd_mask[i]).long().tolist(),
                eos_token_ids=self.eos_token_ids,
                question=_extract_last_user_text(prompt) if isinstance(prompt, list) else prompt,
                max_teacher_prompt_length=self.args.max_reprompt_len,
            )
            record = {"step": self.state.global_step, "sample": i, **record}
            append_jsonl(out / "teacher_audit.jsonl", record)
            with open(out / "teacher_audit.txt", "a") as handle:
                handle.write(render_audit(record) + "\n")
            if not record["ok"]:
                logger.warning("teacher audit, step %d sample %d: %s (see %s)", self.state.global_step, i, ", ".join(record["problems"]), out / "teacher_audit.txt")

    # -- loss ---------------------------------------------------------------------------------
    def _compute_teacher_student_logits(self, model, teacher_model, inputs) -> RowSubsetLogits:
        """TRL's student forward; the teacher forward on the rows with a distillation loss only.

        A row without a teacher context (no successful sibling, no feedback) has an all-zero loss
        mask and adds exactly 0 to the loss, yet TRL runs the teacher on it: about half the rows of a
        batch early in training. Under ZeRO-3/FSDP a forward is collective, so every rank reads at
        least one row.
        """
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        distill_rows = inputs.get("self_distillation_mask")
        loss_mask = completion_mask if distill_rows is None else completion_mask * distill_rows.unsqueeze(1)
        keep = completion_ids.size(1)
        student_ids = torch.cat([inputs["prompt_ids"], completion_ids], dim=1)
        student_logits = self._forward_logits(model, student_ids, torch.cat([inputs["prompt_mask"], completion_mask], dim=1), keep)
        rows = loss_mask.sum(-1).nonzero().squeeze(1)  # [A]
        if len(rows) == 0:
            rows = rows.new_zeros(1)  # read (and discard) one row
        with torch.no_grad(), self._get_teacher_context_for_self_distillation():
            teacher_logits = self._teacher_logits(teacher_model, inputs["teacher_input_ids"][rows], inputs["teacher_attention_mask"][rows], keep)
        return RowSubsetLogits(
            completion_ids=completion_ids, completion_mask=completion_mask, loss_mask=loss_mask, student_logits=student_logits,
            teacher_logits=teacher_logits, teacher_rows=None if len(rows) == len(student_ids) else rows,
        )

    def _teacher_logits(self, teacher_model, input_ids: torch.Tensor, attention_mask: torch.Tensor, keep: int) -> torch.Tensor:
        """[A, keep, V] temperature-scaled teacher logits, each distinct teacher prompt read once
        (`sdlab.training.teacher_forward`) where the model takes a KV cache and `logits_to_keep`."""
        keys = self.model_kwarg_keys
        cache_kwarg = "cache" if "cache" in keys else "past_key_values"
        checkpointing = teacher_model.training and getattr(teacher_model, "is_activation_checkpointing", False)  # would drop the cache
        if "logits_to_keep" not in keys or cache_kwarg not in keys or checkpointing:
            return self._forward_logits(teacher_model, input_ids, attention_mask, keep)
        return shared_prompt_logits(teacher_model, input_ids, attention_mask, completion_length=keep, cache_kwarg=cache_kwarg) / self.temperature

    def _per_token_distillation(self, logits: RowSubsetLogits) -> tuple[torch.Tensor, torch.Tensor]:
        """([B, T] loss terms, [B, T] divergence to monitor) for the configured distillation mode;
        computed on the teacher's rows, zero on the others (masked out of the loss either way)."""
        args, teacher, rows, size = self.args, logits.teacher_logits, getattr(logits, "teacher_rows", None), len(logits.student_logits)
        student = logits.student_logits if rows is None else logits.student_logits[rows]
        ids = logits.completion_ids if rows is None else logits.completion_ids[rows]
        if args.distillation_mode == "topk_logits":
            terms = topk_tail_divergence(student, teacher, k=args.distillation_topk, alpha=args.distillation_alpha, add_tail=args.distillation_add_tail)
            divergence, terms = terms.detach(), clip_divergence(terms, clip=args.divergence_clip)
        elif args.distillation_mode == "full_logits":
            terms = chunked_full_vocab_divergence(student, teacher, alpha=args.distillation_alpha, chunk_tokens=args.distillation_chunk_tokens)
            divergence, terms = terms.detach(), clip_divergence(terms, clip=args.divergence_clip)
        else:
            terms = sampled_token_loss(student, teacher, ids, clip=args.divergence_clip)
            divergence = sampled_token_log_ratio(student.detach(), teacher, ids)
        return scatter_rows(terms, rows, size), scatter_rows(divergence, rows, size)

    def _weigh_markers(self, terms: torch.Tensor, logits: RowSubsetLogits, mode: str) -> torch.Tensor:
        """`marker_weight` on every piece of each epistemic-marker occurrence of the distilled tokens."""
        if self.args.marker_weight == 1.0:
            return terms
        mask = logits.loss_mask.detach().cpu()
        markers = (marker_occurrences_for(logits.completion_ids.detach().cpu(), mask, self.processing_class) >= 0).to(terms.device)
        if mask.any():
            self._metrics[mode]["sdlab/marker_token_fraction"].append(masked_mean(markers.float(), mask.to(terms.device)))
        return weight_marker_tokens(terms, markers, weight=self.args.marker_weight)

    def _compute_self_distillation_loss(self, model, inputs, distillation_logits):
        """TRL's loss with sdlab's reduction (`distillation_reduction`) and reporting."""
        args, logits = self.args, distillation_logits
        mode = "train" if model.training else "eval"
        terms, divergence = self._per_token_distillation(logits)
        terms = self._weigh_markers(terms, logits, mode)
        if args.divergence_clip is not None and logits.loss_mask.any():
            self._metrics[mode]["sdlab/clipped_token_fraction"].append(masked_mean((divergence > args.divergence_clip).float(), logits.loss_mask))
        old_logps = inputs.get("old_per_token_logps")
        if args.distillation_is_clip is not None and old_logps is not None:
            weight = clipped_importance_weight(token_log_probs(logits.student_logits, logits.completion_ids), old_logps, clip=args.distillation_is_clip)
            terms = terms * weight
            self._metrics[mode]["sdlab/is_weight_mean"].append(masked_mean(weight, logits.loss_mask))
        loss = agg_loss(terms, logits.loss_mask, mode=args.distillation_reduction)
        token_mean = agg_loss(terms.detach(), logits.loss_mask, mode=Reduction.TOKEN_MEAN)  # TRL's logged value
        self._log_self_distillation_metric(mode, self.accelerator.gather(token_mean).mean().item())
        self._metrics[mode]["sdlab/active_sequence_fraction"].append(float((logits.loss_mask.sum(-1) > 0).float().mean()))
        if model.training and listens(self, "on_token_stats"):
            size = len(logits.student_logits)
            entropy = (lambda x, rows=None: scatter_rows(entropy_from_logits(x), rows, size).cpu()) if args.monitor_entropy else (lambda x, rows=None: None)
            dispatch(
                self,
                "on_token_stats",
                completion_ids=logits.completion_ids.detach().cpu(),
                token_mask=logits.completion_mask.detach().cpu(),
                distill_mask=logits.loss_mask.detach().cpu(),
                divergence=divergence.float().cpu(),
                student_entropy=entropy(logits.student_logits),
                teacher_entropy=entropy(logits.teacher_logits, getattr(logits, "teacher_rows", None)),
            )
        return loss


def build_sdpo_trainer(
    *,
    model: str,
    args: dict[str, Any] | SdlabSDPOConfig,
    problems: Sequence[Problem] | None = None,
    dataset: Dataset | None = None,
    tokenizer: Any = None,
    reward_funcs: Any = None,
    callbacks: list | None = None,
    context: str | None = None,
    teacher: str | None = None,
    ema_rate: float | None = None,
    distillation: str | None = None,
    topk: int | None = None,
    tail: bool | None = None,
    alpha: float | None = None,
    success_threshold: float | None = None,
    grpo_blend: float | None = None,
    is_clip: float | None | str = "default",
    max_teacher_prompt_length: int | None = None,
    show_teacher: int | None = None,
    audit_dir: str | Path | None = None,
    reduction: str | None = None,
    template: str | None = None,
    marker_weight: float | None = None,
    divergence_clip: float | None = None,
    context_schedule: dict[str, Any] | None = None,
    distill_rows: str | None = None,
) -> SdlabSDPOTrainer:
    """Self-distillation from a saved model directory `model` (the fixed/EMA teacher is rebuilt from it).

    `args`: an `SdlabSDPOConfig`, or a dict of its fields laid over `trainer_defaults()`. The
    keyword settings (None = the study's default in SdlabSDPOConfig) map onto config fields:
    teacher -> teacher_model_kind ('fixed' | 'ema'), ema_rate -> teacher_update_rate,
    distillation -> distillation_mode ('full' | 'topk' | 'sampled'), topk, tail -> distillation_add_tail,
    alpha, success_threshold, grpo_blend -> 1 - distillation_weight, is_clip -> distillation_is_clip
    ("default": 2.0; None: off), max_teacher_prompt_length -> max_reprompt_len, show_teacher / audit_dir
    (teacher_audit.jsonl/.txt; default output_dir), reduction -> distillation_reduction,
    template -> teacher_template ('training' | 'probe' | 'trl' | a format string); the remedies
    (docs/remedies.md): marker_weight, divergence_clip, distill_rows ('all' | 'agreeing') and
    context_schedule ({start, steps, share} -> context_schedule_start/_steps/_share).
    """
    schedule = context_schedule or {}
    settings = {
        "context": context, "teacher_model_kind": teacher, "teacher_update_rate": ema_rate, "distillation_mode": distillation,
        "distillation_topk": topk, "distillation_add_tail": tail, "distillation_alpha": alpha, "success_reward_threshold": success_threshold,
        "distillation_weight": None if grpo_blend is None else 1.0 - grpo_blend, "max_reprompt_len": max_teacher_prompt_length,
        "show_teacher": show_teacher, "audit_dir": None if audit_dir is None else str(audit_dir), "distillation_reduction": reduction,
        "teacher_template": template, "marker_weight": marker_weight, "divergence_clip": divergence_clip, "distill_rows": distill_rows,
        "context_schedule_start": schedule.get("start"), "context_schedule_steps": schedule.get("steps"), "context_schedule_share": schedule.get("share"),
    }
    settings = {key: value for key, value in settings.items() if value is not None}
    if is_clip != "default":
        settings["distillation_is_clip"] = is_clip
    if isinstance(args, dict):
        args = {**settings, **args}
    elif settings:
        raise ValueError(f"args is a config object: set {', '.join(settings)} in it instead of as keywords")
    return SdlabSDPOTrainer(
        model=str(model),
        reward_funcs=reward_funcs if reward_funcs is not None else math_reward,
        args=make_config(SdlabSDPOConfig, args),
        train_dataset=resolve_dataset(problems, dataset),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
