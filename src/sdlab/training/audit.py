"""Teacher-input audit: exactly what the student and the teacher see, token by token.

Self-distillation compares two forward passes position by position: the student on
(prompt, response) and the teacher on (prompt + context, response). A silent mismatch (the
response shifted by one, the EOS left out of the loss, the question's start cut off, a
different `<think>` prefill) trains on garbage without any error. `audit_sample` checks one
sample as TRL laid it out (prompts left-padded, responses right-padded, the same response
block at the end of both rows) and `render_audit` prints it for a human.
`sdlab.training.sdpo.SdlabSDPOTrainer` writes both to `teacher_audit.jsonl` / `teacher_audit.txt`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _active(ids: Sequence[int], mask: Sequence[int]) -> list[int]:
    return [int(i) for i, m in zip(ids, mask) if m]


def _after_last(ids: list[int], boundary_ids: set[int]) -> list[int] | None:
    """Tokens after the last end-of-turn token: the assistant header and any think prefill."""
    positions = [i for i, token in enumerate(ids) if token in boundary_ids]
    return ids[positions[-1] + 1 :] if positions else None


def _context_text(student_prompt: str, teacher_prompt: str) -> str:
    """What the teacher's prompt adds: its text minus the common prefix and suffix with the student's."""
    start = 0
    while start < min(len(student_prompt), len(teacher_prompt)) and student_prompt[start] == teacher_prompt[start]:
        start += 1
    end = 0
    while end < min(len(student_prompt), len(teacher_prompt)) - start and student_prompt[-1 - end] == teacher_prompt[-1 - end]:
        end += 1
    return teacher_prompt[start : len(teacher_prompt) - end]


def audit_sample(
    tokenizer: Any,
    *,
    student_ids: Sequence[int],
    student_mask: Sequence[int],
    teacher_ids: Sequence[int],
    teacher_mask: Sequence[int],
    loss_mask: Sequence[int],
    eos_token_ids: Sequence[int],
    question: str | None = None,
    max_teacher_prompt_length: int | None = None,
) -> dict[str, Any]:
    """Check one (student row, teacher row) pair; `loss_mask` covers the response block ([T]).

    Both rows end with the same T response positions (T = len(loss_mask)); the distillation
    compares the logits that predict them. A check is True (passed), False (failed: listed in
    `problems`) or None (does not apply, e.g. no question text given, response truncated).
    """
    width = len(loss_mask)
    eos = {int(e) for e in eos_token_ids}
    student_prompt = _active(student_ids[:-width], student_mask[:-width])
    teacher_prompt = _active(teacher_ids[:-width], teacher_mask[:-width])
    response_mask = [int(m) for m in student_mask[-width:]]
    response = _active(student_ids[-width:], response_mask)
    length = len(response)
    aligned = list(student_ids[-width:]) == list(teacher_ids[-width:]) and response_mask == [int(m) for m in teacher_mask[-width:]]
    aligned = aligned and response_mask == [1] * length + [0] * (width - length)  # right padding only
    ended = length > 0 and response[-1] in eos
    truncated = not ended and length == width
    active = any(int(m) for m in loss_mask)
    student_text = tokenizer.decode(student_prompt, skip_special_tokens=False)
    teacher_text = tokenizer.decode(teacher_prompt, skip_special_tokens=False)
    student_tail, teacher_tail = _after_last(student_prompt, eos), _after_last(teacher_prompt, eos)
    checks: dict[str, bool | None] = {
        "response_aligned": aligned,
        "eos_present": ended or (None if truncated else False),
        "eos_in_loss": (bool(int(loss_mask[length - 1])) if ended else None) if active else None,
        "question_intact_student": None if question is None else question in student_text,
        "question_intact_teacher": None if question is None or not active else question in teacher_text,
        # the assistant header and any `<think>` prefill, after the user turn's end, must be the same tokens
        "think_boundary_same": None if student_tail is None or teacher_tail is None else student_tail == teacher_tail,
    }
    problems = [name for name, passed in checks.items() if passed is False]
    return {
        "active": active,
        "truncated": truncated,
        "teacher_prompt_at_limit": max_teacher_prompt_length is not None and len(teacher_prompt) >= max_teacher_prompt_length,
        "checks": checks,
        "problems": problems,
        "ok": not problems,
        "student_prompt": student_text,
        "teacher_prompt": teacher_text,
        "context": _context_text(student_text, teacher_text),
        "student_prompt_tokens": len(student_prompt),
        "teacher_prompt_tokens": len(teacher_prompt),
        "response": tokenizer.decode(response, skip_special_tokens=False),
        "tokens": [
            {"pos": i, "id": token, "piece": tokenizer.decode([token]), "loss": int(loss_mask[i]), "eos": token in eos}
            for i, token in enumerate(response)
        ],
    }


def render_audit(record: dict[str, Any]) -> str:
    """A readable page for one audited sample."""
    head = f"== step {record.get('step', '?')} sample {record.get('sample', '?')}: " + ("OK" if record["ok"] else "PROBLEMS: " + ", ".join(record["problems"]))
    checks = " | ".join(f"{name}={'-' if value is None else ('ok' if value else 'FAIL')}" for name, value in record["checks"].items())
    flags = f"active={record['active']} truncated={record['truncated']} teacher_prompt_at_limit={record['teacher_prompt_at_limit']}"
    tokens = "\n".join(
        f"  {t['pos']:>5} {t['id']:>7} {t['piece']!r:<20} loss={t['loss']}{'  <eos>' if t['eos'] else ''}" for t in record["tokens"]
    )
    return "\n".join(
        [
            head,
            checks,
            flags,
            f"-- student prompt ({record['student_prompt_tokens']} tokens) --",
            record["student_prompt"],
            f"-- teacher prompt ({record['teacher_prompt_tokens']} tokens) --",
            record["teacher_prompt"],
            "-- context (what the teacher sees beyond the student's prompt) --",
            record["context"],
            f"-- response ({len(record['tokens'])} tokens: position, id, piece, in loss) --",
            tokens,
            "",
        ]
    )
