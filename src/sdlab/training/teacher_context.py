"""The SDPO teacher's prompt: sdlab's template (or TRL's) around the question and a context, and
TRL's context builder with sdlab's fixes (the question is never cut: an over-long prompt loses the
middle of its solution; the `regenerated` round; the richness schedule). Used by `sdlab.training.sdpo`."""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
from trl.experimental.sdpo import SDPOConfig
from trl.experimental.sdpo.sdpo_trainer import SuccessfulRolloutTeacherContextBuilder
from trl.trainer.utils import pad

from sdlab import SdlabError
from sdlab.core.contexts import end_context_rows, end_context_share
from sdlab.core.grading import remove_think

FEEDBACK_TEMPLATE = "{question}\n\nFeedback on an earlier attempt: {feedback}\n\nCorrectly solve the original question."
TRL_TEMPLATES = "trl"  # teacher_template value selecting TRL's own reprompt/solution/feedback templates
CUT_MARK = "\n[...]\n"
_TRL_DEFAULTS = {name: SDPOConfig.__dataclass_fields__[name].default for name in ("reprompt_template", "solution_template", "feedback_template")}


def format_teacher_prompt(*, question: str, solution: str, feedback: str, template: str, feedback_template: str) -> str:
    """The teacher's last user message. Empty `solution`/`feedback` mean none is available."""
    if template == TRL_TEMPLATES:
        return _TRL_DEFAULTS["reprompt_template"].format(
            prompt=question,
            solution=_TRL_DEFAULTS["solution_template"].format(successful_previous_attempt=solution) if solution else "",
            feedback=_TRL_DEFAULTS["feedback_template"].format(feedback_raw=feedback) if feedback else "",
        )
    if solution:
        return template.format(question=question, solution=solution)
    return feedback_template.format(question=question, feedback=feedback) if feedback else question


class QuestionSafeContextBuilder(SuccessfulRolloutTeacherContextBuilder):
    """TRL's context builder (which sibling is the demonstration, which rows are active), with
    sdlab's prompt text, the `regenerated` round, over-long prompts shortened inside the solution,
    and the richness schedule (each row's context, `solution` or `solution_nothink`, chosen per rollout)."""

    def build(self, output, prompts, rewards, feedbacks=None):
        self._pieces: dict[str, tuple[str, str, str, str]] = {}
        self._counts = {"cut": 0, "regenerated": 0, "regenerated_correct": 0}
        self._row_contexts = self._scheduled_contexts(rewards, len(prompts))
        scheduled = None if self._row_contexts is None else list(self._row_contexts)
        result = super().build(output, prompts, rewards, feedbacks)
        rows = max(1, len(prompts))
        self.last_metrics["sdlab/solution_cut_fraction"] = min(1.0, self._counts["cut"] / rows)  # regenerated: s and y~ may both be cut
        if self.trainer.args.context == "regenerated":
            self.last_metrics["sdlab/regenerated_correct_fraction"] = self._counts["regenerated_correct"] / max(1, self._counts["regenerated"])
        if scheduled is not None:
            if self._row_contexts or len(scheduled) != int(result["self_distillation_mask"].sum()):
                raise RuntimeError("context_schedule: TRL built teacher contexts for other rows than sdlab's rule predicted (has TRL's context builder changed?)")
            self.last_metrics["sdlab/end_context_share"] = self._share
            self.last_metrics["sdlab/end_context_fraction"] = sum(c == self.trainer.args.context for c in scheduled) / max(1, len(scheduled))
        self._row_contexts = None
        return result

    def _scheduled_contexts(self, rewards: torch.Tensor, count: int) -> deque[str] | None:
        """The richness schedule: the context of each local row that gets one, in row order (TRL's
        rule: a successful sibling, itself excluded when `dont_reprompt_on_self_success`); None without a schedule."""
        trainer, args = self.trainer, self.trainer.args
        if args.context_schedule_start is None:
            return None
        group = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
        all_rewards = trainer.accelerator.gather(rewards).tolist()
        first = trainer.accelerator.process_index * count
        # generation batches so far: TRL generates every steps_per_generation x num_iterations micro-steps,
        # and global_step counts optimizer updates (gradient_accumulation_steps micro-steps each)
        step = trainer.state.global_step * args.gradient_accumulation_steps // (args.steps_per_generation * trainer.num_iterations)
        share = end_context_share(step, steps=args.context_schedule_steps, share=args.context_schedule_share)
        ends = end_context_rows(len(all_rewards), share=share, seed=args.seed, step=step)
        self._share = share
        contexts = deque()
        for row in range(first, first + count):
            siblings = range(row - row % group, row - row % group + group)
            if any(all_rewards[j] >= args.success_reward_threshold for j in siblings if not (args.dont_reprompt_on_self_success and j == row)):
                contexts.append(args.context if ends[row] else args.context_schedule_start)
        return contexts

    def _build_reprompt_text(self, prompt_text: str, solution_text: str, feedback_text: str) -> str:
        """TRL calls this once per row with a context, in row order: the schedule's next context, else `context`."""
        scheduled = getattr(self, "_row_contexts", None)
        context = scheduled.popleft() if scheduled else self.trainer.args.context
        return self._format_prompt(prompt_text, solution_text, feedback_text, context)

    def _format_prompt(self, prompt_text: str, solution_text: str, feedback_text: str, context: str) -> str:
        args = self.trainer.args
        if context == "solution_nothink" and solution_text:
            solution_text = remove_think(solution_text)
        text = format_teacher_prompt(question=prompt_text, solution=solution_text, feedback=feedback_text, template=args.teacher_template, feedback_template=args.feedback_teacher_template)
        self._pieces[text] = (prompt_text, solution_text, feedback_text, context)
        return text

    def _tokenize_teacher_messages(self, teacher_messages_list):
        """Replaces TRL's (which keeps each prompt's last `max_reprompt_len` tokens): prompts are fitted, then padded."""
        messages, ids = self._fit_all(list(teacher_messages_list))
        if self.trainer.args.context == "regenerated":
            messages, ids = self._fit_all(self._regenerate(messages))
        device = self.trainer.accelerator.device
        return {
            "prompt_ids": pad([torch.as_tensor(row, device=device) for row in ids], padding_value=self.trainer._tokenizer.pad_token_id, padding_side="left"),
            "prompt_mask": pad([torch.ones(len(row), dtype=torch.long, device=device) for row in ids], padding_value=0, padding_side="left"),
        }

    def _fit_all(self, messages: list[Any]) -> tuple[list[Any], list[list[int]]]:
        """Tokenise all teacher prompts in one call; shorten the solution of those over the limit."""
        ids = self.trainer._tokenize_prompts_untruncated(messages)
        limit = self.trainer.args.max_reprompt_len
        for index, row in enumerate(ids):
            if len(row) <= limit:
                continue
            if self._text(messages[index]) not in self._pieces:  # no context: no distillation loss on this row
                ids[index] = row[-limit:]
                continue
            messages[index] = self._fit(messages[index], len(row))
            ids[index] = self.trainer._tokenize_prompts_untruncated([messages[index]])[0]
        return messages, ids

    @staticmethod
    def _text(message: Any) -> str:
        return message[-1]["content"] if isinstance(message, list) else message

    @staticmethod
    def _with_text(message: Any, text: str) -> Any:
        return [*message[:-1], {**message[-1], "content": text}] if isinstance(message, list) else text

    def _length(self, message: Any) -> int:
        return len(self.trainer._tokenize_prompts_untruncated([message])[0])

    def _fit(self, message: Any, length: int) -> Any:
        """Shorten the solution (cutting its middle: the start and the final answer stay) until the
        teacher prompt fits `max_reprompt_len`; the question is never cut."""
        limit = self.trainer.args.max_reprompt_len
        question, solution, feedback, context = self._pieces[self._text(message)]
        tokenizer = self.trainer.processing_class
        tokens = tokenizer(solution, add_special_tokens=False)["input_ids"] if solution else []
        keep = len(tokens) - (length - limit)
        while True:
            if keep <= 0:
                raise SdlabError(
                    f"teacher prompt: the question and template leave no room for the context within max_reprompt_len={limit} tokens; "
                    "raise the teacher prompt limit (max_teacher_prompt_length) or drop such long questions"
                )
            cut = tokenizer.decode(tokens[: keep - keep // 2]) + CUT_MARK + tokenizer.decode(tokens[len(tokens) - keep // 2 :])
            text = self._format_prompt(question, cut, feedback, context)
            length = self._length(self._with_text(message, text))
            if length <= limit:
                self._counts["cut"] += 1
                return self._with_text(message, text)
            keep -= length - limit

    def _regenerate(self, messages: list[Any]) -> list[Any]:
        """`regenerated`: the policy answers `regenerated_samples` times given (x, s); y~, the first
        correct answer, else the first answer (the study's rule), replaces s."""
        targets: dict[str, list[int]] = {}
        for index, message in enumerate(messages):
            pieces = self._pieces.get(self._text(message))
            if pieces is not None and pieces[1]:
                targets.setdefault(self._text(message), []).append(index)
        if not targets:
            return messages
        n = self.trainer.args.regenerated_samples
        firsts = [indices[0] for indices in targets.values() for _ in range(n)]  # each target's prompt, n times
        prompt_ids = self.trainer._tokenize_prompts_untruncated([messages[i] for i in firsts])
        completion_ids = self.trainer.generate_once(prompt_ids)
        texts = self.trainer.processing_class.batch_decode(completion_ids, skip_special_tokens=True)
        correct = self.trainer.score_completions([self.trainer._batch_inputs[i] for i in firsts], texts, completion_ids)
        out = list(messages)
        for group, (key, indices) in enumerate(targets.items()):
            answers, verdicts = texts[group * n : (group + 1) * n], correct[group * n : (group + 1) * n]
            found = next((i for i, ok in enumerate(verdicts) if ok), None)
            self._counts["regenerated"] += len(indices)
            self._counts["regenerated_correct"] += len(indices) if found is not None else 0
            question, _, feedback, context = self._pieces[key]
            new_text = self._format_prompt(question, answers[found or 0], feedback, context)
            for index in indices:
                out[index] = self._with_text(messages[index], new_text)
        return out
