"""`Problem`: one problem, whatever file, dataset or generator it came from (the record every
loader returns and every trainer, probe and evaluation consumes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One problem, whatever file or generator it came from.

    `messages` is the chat prompt as the model sees it (the last user message holds the
    question, including any instruction such as "put your final answer within \\boxed{}");
    `question` is that last user message's text, which teacher contexts are appended to.
    """

    id: str
    question: str
    answer: str
    messages: tuple[dict[str, str], ...]
    solution: str | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @staticmethod
    def from_question(id: str, question: str, answer: str, *, solution: str | None = None, source: str = "", meta: dict[str, Any] | None = None) -> "Problem":
        return Problem(id=id, question=question, answer=answer, messages=({"role": "user", "content": question},), solution=solution, source=source, meta=meta or {})
