"""Organism tasks as shared `Problem` records: what `organism:FAMILY:N[:SEED]` specs load."""

from __future__ import annotations

import re

from sdlab import SdlabError
from sdlab.core.problem import Problem
from sdlab.organism.corpus import reference_solution
from sdlab.organism.tasks import Task, brute_force_answer, known_families, question_text, sample_tasks


def to_problem(task: Task, *, family: str) -> Problem:
    """A shared `Problem` record; `solution` is a correct organism-style trace (think block included)."""
    bare = family == "linmod-bare"
    return Problem.from_question(
        id=f"{task.key}-bare" if bare else task.key,
        question=question_text(task, example=not bare),
        answer=str(brute_force_answer(task)),
        solution=reference_solution(task),
        source=f"organism:{family}",
        meta={"family": family, "kind": task.kind, "p": task.p, "a": task.a, "b": task.b, "c": task.c, "x": task.x},
    )


_SPEC = re.compile(r"^organism:(?P<family>[a-z-]+):(?P<n>\d+)(?:x(?P<repeat>\d+))?(?::(?P<seed>\d+))?$")


def organism_tasks(spec: str) -> tuple[list[Task], int]:
    """`organism:FAMILY:N[:SEED]` or `organism:FAMILY:AxB[:SEED]` -> (its distinct tasks, repeats),
    checked against the known families and their sizes (see the tasks module's doc)."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise SdlabError(f"organism spec {spec!r}: write organism:FAMILY:N[:SEED] or organism:FAMILY:AxB[:SEED], e.g. organism:linmod:512 or organism:linmod:8x8; families: {', '.join(known_families())}")
    family, n = match["family"], int(match["n"])
    repeat, seed = int(match["repeat"] or 1), int(match["seed"] or 0)
    if n < 1 or repeat < 1:
        raise SdlabError(f"organism spec {spec!r}: counts must be at least 1")
    return sample_tasks(family, n, seed=seed), repeat


def load_organism_problems(spec: str) -> list[Problem]:
    """The problems of an organism spec (see `organism_tasks`), each repeated round-robin."""
    tasks, repeat = organism_tasks(spec)
    family = _SPEC.match(spec.strip())["family"]
    problems = [to_problem(t, family=family) for t in tasks]
    return [problem for _ in range(repeat) for problem in problems]
