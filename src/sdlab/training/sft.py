"""Off-policy SFT data (the study's D_ug and D_sg) and the TRL SFT trainer that trains on it.

    sdlab sft-data --model organism --data organism:add:2000 --mode guided --n-correct 800 --out d_sg.jsonl

Both sets are built as the study builds them (its `make_sft_dataset.py`), from one conditioning
solution s per problem: the problem's reference solution when it has one, else the model's
first correct unguided response (problems with neither are skipped). D_ug is s itself; D_sg is
the first correct response sampled with s in context (the study's hint template), else the
problem is skipped for D_sg. The context is dropped from the training example, so SFT on D_sg
teaches the model to answer the bare question the way it answers when it already knows the
solution. Both walk the problems in the same order, so they cover the same problems, less
those where no guided sample was correct.

Rows are chat-format JSONL (`messages` = the problem's prompt + one assistant turn) written as
they are found; a `.progress.json` beside the file records which problems were tried, so an
interrupted collection resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from sdlab import SdlabError
from sdlab.core.io import append_jsonl, read_jsonl, write_json
from sdlab.core.problem import Problem
from sdlab.training.args import with_checkpointing_name

logger = logging.getLogger(__name__)

Mode = Literal["unguided", "guided"]
MODES = ("unguided", "guided")


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def progress_path(out: Path) -> Path:
    return out.with_name(out.name + ".progress.json")


def sft_example(problem: Problem, response: str, *, mode: Mode) -> dict[str, Any]:
    """One training row: the bare prompt (no context, whatever the mode) + the response."""
    return {
        "messages": [*problem.messages, {"role": "assistant", "content": response}],
        "id": problem.id,
        "answer": problem.answer,
        "mode": mode,
    }


def first_correct(responses: Sequence[str], verdicts: Sequence[bool]) -> str | None:
    return next((text for text, ok in zip(responses, verdicts) if ok), None)


def collect_sft_data(
    *,
    model: str,
    data: str,
    mode: Mode,
    n_correct: int,
    out: str | Path,
    max_attempts: int = 8,
    max_new_tokens: int = 256,
    temperature: float = 0.6,
    problems_per_batch: int = 8,
    backend: str = "auto",
    enable_thinking: bool | None = None,
    seed: int = 0,
    show_progress: bool = True,
) -> int:
    """Load the model and problems, then `collect_traces`; returns the number of traces in `out`."""
    from sdlab.core.data import load_problems
    from sdlab.evaluation.generation import SamplingParams, make_generator

    if len(read_jsonl(out)) >= n_correct:
        return len(read_jsonl(out))
    generator = make_generator(model, backend=backend, batch_size=problems_per_batch * max_attempts)
    sampling = SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens, n=max_attempts)
    return collect_traces(
        generator, load_problems(data), mode=mode, n_correct=n_correct, out=out, sampling=sampling,
        problems_per_batch=problems_per_batch, enable_thinking=enable_thinking, seed=seed, show_progress=show_progress,
    )


def collect_traces(generator, problems: Sequence[Problem], *, mode: Mode, n_correct: int, out: str | Path, sampling, problems_per_batch: int = 8, enable_thinking: bool | None = None, seed: int = 0, show_progress: bool = False) -> int:
    """Append correct traces to `out` until it holds `n_correct` (at most one per problem).

    Each problem's conditioning solution s is its reference, else the first correct of
    `sampling.n` unguided samples. Unguided mode keeps s itself; guided mode samples `sampling.n`
    responses with s in context and keeps the first correct one under the bare prompt.
    Problems already tried (per the progress file) are skipped."""
    from rich.progress import Progress

    from sdlab.core.contexts import build_teacher_messages
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state_file = progress_path(out)
    tried: set[str] = set(json.loads(state_file.read_text())["tried"]) if state_file.exists() else set()
    have = len(read_jsonl(out))
    pending = [p for p in problems if p.id not in tried]

    def sample_correct(prompts, chunk):
        return first_correct_per_prompt(generator, prompts, [p.answer for p in chunk], replace(sampling, seed=seed + len(tried)), enable_thinking)

    with Progress(disable=not show_progress, transient=True) as bar:
        task = bar.add_task(f"collecting {mode} traces", total=n_correct, completed=have)
        for chunk in _chunks(pending, problems_per_batch):
            if have >= n_correct:
                break
            solutions = [p.solution for p in chunk]
            missing = [i for i, solution in enumerate(solutions) if solution is None]
            if missing:
                for i, own in zip(missing, sample_correct([chunk[i].messages for i in missing], [chunk[i] for i in missing])):
                    solutions[i] = own
            if mode == "unguided":
                found = solutions
            else:
                solvable = [i for i, s in enumerate(solutions) if s is not None]
                guided = sample_correct([build_teacher_messages(chunk[i].messages, solutions[i]) for i in solvable], [chunk[i] for i in solvable])
                found = [None] * len(chunk)
                for i, response in zip(solvable, guided):
                    found[i] = response
            for problem, response in zip(chunk, found):
                tried.add(problem.id)
                if response is not None and have < n_correct:
                    append_jsonl(out, sft_example(problem, response, mode=mode))
                    have += 1
            write_json(state_file, {"tried": sorted(tried)})
            bar.update(task, completed=have)
    if have < n_correct:
        logger.warning("%s: %d of %d correct traces after trying every problem", out, have, n_correct)
    return have


def first_correct_per_prompt(generator, prompts, answers: Sequence[str], sampling, enable_thinking: bool | None) -> list[str | None]:
    """Sample `sampling.n` responses per prompt; the first correct one per prompt, or None."""
    from sdlab.core.grading import grade_many

    if not prompts:
        return []
    groups = generator.generate([list(m) for m in prompts], sampling, enable_thinking=enable_thinking)
    texts = [c.text for group in groups for c in group]
    verdicts = grade_many(texts, [answer for answer, group in zip(answers, groups) for _ in group])
    found, start = [], 0
    for group in groups:
        found.append(first_correct(texts[start : start + len(group)], verdicts[start : start + len(group)]))
        start += len(group)
    return found


def load_sft_dataset(path: str | Path):
    """Chat JSONL -> a `datasets.Dataset` in TRL's conversational prompt-completion format.

    Splitting `messages` into prompt (all but the last turn) and completion (the assistant
    turn) makes TRL mask the prompt out of the loss with any chat template; TRL's
    `assistant_only_loss` instead needs `{% generation %}` markers that most templates
    (and the organism's) lack."""
    from datasets import Dataset

    rows = read_jsonl(path)
    if not rows:
        raise SdlabError(f"{path}: no SFT examples; collect them with `sdlab sft-data`")
    for line, row in enumerate(rows, 1):
        messages = row.get("messages")
        if not isinstance(messages, list) or len(messages) < 2 or messages[-1].get("role") != "assistant":
            raise SdlabError(f"{path}: line {line}: `messages` must be a list of turns ending with an assistant turn")
    return Dataset.from_list([{"prompt": row["messages"][:-1], "completion": row["messages"][-1:]} for row in rows])


def build_sft_trainer(*, model: str, dataset, args: dict[str, Any], callbacks: list):
    """TRL SFTTrainer with the loss on the assistant turn only (prompt tokens masked)."""
    from trl import SFTConfig, SFTTrainer

    sft_args = SFTConfig(**with_checkpointing_name(args), completion_only_loss=True, assistant_only_loss=False, packing=False)
    return SFTTrainer(model=model, args=sft_args, train_dataset=dataset, callbacks=callbacks)
