"""Teacher contexts: what the self-distillation teacher sees beyond the question.

The teacher is the model itself on `x + c`. How much `c` says about the answer decides
how far the teacher's distribution moves from the student's (the study's Table 1):

    none              no context: the teacher is the student (baseline)
    solution          s, a correct response of the model itself, think block included
    solution_nothink  s with its think block removed (`sdlab.core.grading.remove_think`)
    regenerated       y~, the model's own response when given s (a chained second round)
    partial:F         the first fraction F of s, counted in *characters* (0 < F <= 1)
    hint              only the final answer, as `\\boxed{answer}`

`partial:F` cuts by characters, not tokens, so that the same F names the same text for
models with different tokenizers; a richness continuum between `none` and `solution`.

`build_teacher_messages` is shared by the probe and by training (the SDPO teacher prompt).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

from sdlab import SdlabError
from sdlab.core.grading import remove_think

# The study's two prompts differ only in whitespace: its probe's hint prompt, and its SDPO
# training teacher prompt. `sdpo.template` picks one for training; the probe uses the probe's.
PROBE_TEMPLATE = "{question}\n\nCorrect solution: {solution}\n\nCorrectly solve the original question."
TRAINING_TEMPLATE = "{question}\nCorrect solution:\n\n{solution}\n\nCorrectly solve the original question."
DEFAULT_TEMPLATE = PROBE_TEMPLATE
TEMPLATES = {"training": TRAINING_TEMPLATE, "probe": PROBE_TEMPLATE}
TEMPLATE_FIELDS = ("question", "solution")
CONTEXT_KINDS = ("none", "solution", "solution_nothink", "regenerated", "partial", "hint")
ALLOWED_NAMES = "none, solution, solution_nothink, regenerated, partial:F (0 < F <= 1), hint"
CUT_MARK = "\n[...]\n"  # where an over-long context lost its middle (the same mark as training's)


@dataclass(frozen=True)
class ContextSpec:
    """One named context; `fraction` is set only for `partial:F`."""

    name: str
    kind: str
    fraction: float | None = None


def parse_context_name(name: str) -> ContextSpec:
    name = name.strip()
    kind, sep, arg = name.partition(":")
    if kind not in CONTEXT_KINDS:
        raise SdlabError(f"unknown context {name!r}; allowed: {ALLOWED_NAMES}")
    if kind != "partial":
        if sep:
            raise SdlabError(f"context {name!r}: only partial takes an argument (partial:0.5); allowed: {ALLOWED_NAMES}")
        return ContextSpec(name=kind, kind=kind)
    try:
        fraction = float(arg)
    except ValueError:
        raise SdlabError(f"context {name!r}: partial needs a fraction of the solution, e.g. partial:0.5") from None
    if not 0.0 < fraction <= 1.0:
        raise SdlabError(f"context {name!r}: the fraction must be in (0, 1], got {fraction}")
    return ContextSpec(name=f"partial:{fraction:g}", kind="partial", fraction=fraction)


def parse_context_names(text: str | list[str]) -> list[ContextSpec]:
    """`"none,solution,partial:0.5"` -> specs, in order, duplicates and empty names rejected."""
    names = text.split(",") if isinstance(text, str) else list(text)
    names = [n.strip() for n in names]
    if not names or any(not n for n in names):
        raise SdlabError(f"contexts {text!r}: give a comma-separated list of names; allowed: {ALLOWED_NAMES}")
    specs = [parse_context_name(n) for n in names]
    seen = [s.name for s in specs]
    duplicates = sorted({n for n in seen if seen.count(n) > 1})
    if duplicates:
        raise SdlabError(f"contexts {text!r}: {', '.join(duplicates)} listed twice")
    return specs


def validate_template(template: str) -> str:
    """A template must be a str.format pattern using exactly {question} and {solution}."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as err:
        raise SdlabError(f"teacher template {template!r} is not a valid format string ({err}); write literal braces as {{{{ }}}}") from None
    if fields != set(TEMPLATE_FIELDS):
        raise SdlabError(f"teacher template {template!r} uses fields {sorted(fields)}; it must use exactly {{question}} and {{solution}}")
    return template


def context_text(spec: ContextSpec, *, solution: str | None, answer: str | None = None, regenerated: str | None = None) -> str | None:
    """The text that fills `{solution}` in the template, or None for no context."""
    if spec.kind == "none":
        return None
    if spec.kind == "hint":
        if answer is None:
            raise SdlabError("context hint needs the problem's answer")
        return f"\\boxed{{{answer}}}"
    if spec.kind == "regenerated":
        if regenerated is None:
            raise SdlabError("context regenerated needs the model's response given the solution (run the solution round first)")
        return regenerated
    if solution is None:
        raise SdlabError(f"context {spec.name} needs a correct solution")
    if spec.kind == "solution":
        return solution
    if spec.kind == "solution_nothink":
        return remove_think(solution)
    return solution[: max(1, round(spec.fraction * len(solution)))]


def build_teacher_messages(problem_messages: list[dict[str, str]] | tuple[dict[str, str], ...], context: str | None, *, template: str = DEFAULT_TEMPLATE) -> list[dict[str, str]]:
    """Put `context` into the LAST user message through `template`; every other message
    (system prompt, earlier turns) is kept as is. `None` returns an unchanged copy."""
    messages = [dict(m) for m in problem_messages]
    if context is None:
        return messages
    user_turns = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not user_turns:
        raise SdlabError("teacher prompt: the problem has no user message to put the context in")
    last = user_turns[-1]
    messages[last]["content"] = template.format(question=messages[last]["content"], solution=context)
    return messages


def cut_middle(context_ids: list[int], keep: int, tokenizer) -> str:
    """A context shortened to about `keep` tokens by dropping its middle: its start and its end
    (where a solution states its final answer) stay; the question is never touched."""
    if keep <= 0:
        raise SdlabError("teacher prompt: the question and template leave no room for the context; raise the teacher prompt limit")
    return tokenizer.decode(context_ids[: keep - keep // 2]) + CUT_MARK + tokenizer.decode(context_ids[len(context_ids) - keep // 2 :])


# ---------------------------------------------------------------- richness schedule (training)


def end_context_share(step: int, *, steps: int, share: float | None = None) -> float:
    """The share of a generation batch's rollouts whose teacher sees the schedule's end context
    at generation batch `step` (0, 1, ...): `share` when fixed (a constant mix), else a linear
    ramp from 0 at step 0 to 1 at step `steps` (1 from then on; `steps` 0: 1 from the start)."""
    if share is not None:
        return share
    return 1.0 if step >= steps else step / steps


def end_context_rows(count: int, *, share: float, seed: int, step: int) -> list[bool]:
    """Which of a generation batch's `count` rollouts get the end context: round(share * count)
    of them, picked by a permutation drawn from (seed, step) alone, so a run and its resume
    choose the same rows and the share is exact, not a coin flip's."""
    chosen = set(random.Random(f"{seed}:{step}").sample(range(count), round(share * count)))
    return [row in chosen for row in range(count)]
