"""Procedural task families for the model organism, and the `organism:FAMILY:N[:SEED]` spec.

Every problem has one exactly verifiable integer answer. The families are built so that
*searching with self-verification is functionally useful* for a tiny model: the direct
answer (an inverse in modular arithmetic) is hard to compute in one step, while checking
a candidate is a short chain of small modular lookups (`4*3=5, 5+9=0` mod 7), the same
few hundred facts in every family.

    linmod       solve a*x + b = c (mod p) for x in 0..p-1, p in {5, 7, 11}       (in distribution)
    linmod-bare  linmod-eval's problems asked without the worked example: the same
                 search, its first copy from the question's statement                (OOD, unseen form)
    linmod-hard  linmod at p = 13: more candidates, longer searches; a tenth as many
                 p = 13 problems as ID ones are searched in the corpus (a slot the
                 search never filled with 13 is not copied), none post-trained;
                 asked: p = 13's eval split, in no corpus                       (OOD, harder)
    sqmod        smallest x in 0..p-1 with x*x + b = c (mod p)                      (OOD, unseen shape)
    narrow       compute (a*b + c) mod p: one pattern, no search                   (chemistry-QA analogue)
    check        does x=k solve a*x + b = c (mod p)? answer 1 or 0                 (check-step probe)

Families with a training role are hash-partitioned by problem key into three disjoint
splits: `pretrain` (the organism's corpus), `train` (what GRPO / SDPO train on) and `eval`.
`linmod` names the train split, `linmod-eval` the eval split, `linmod-pretrain` the corpus
split; `linmod-bare`, `linmod-hard` and `sqmod` are evaluation-only and appear in no corpus
(no corpus question lacks its worked example; the corpus's p = 13 problems are p = 13's
`pretrain` split, `linmod-hard` its `eval` split).

Spec syntax (`sdlab.core.data.load_problems("organism:linmod:512")`):

    organism:FAMILY:N[:SEED]     N distinct problems (a seeded permutation; nested: the
                                 first 8 of seed s are the first 8 of its first 64)
    organism:FAMILY:AxB[:SEED]   A distinct problems, each repeated B times, round-robin
                                 (organism:linmod:1x64, organism:linmod:8x8)
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import lru_cache

from sdlab import SdlabError

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
SPLITS = ("pretrain", "train", "eval")
EVAL_ONLY_FAMILIES = ("linmod-bare", "linmod-hard", "sqmod")
# A family that asks another family's problems in another form: the same problems, in the same
# seeded order, so `organism:linmod-bare:32` pairs with `organism:linmod-eval:32`.
SAME_PROBLEMS_AS = {"linmod-bare": "linmod-eval"}
SPLIT_FAMILIES = ("linmod", "narrow", "check")
ID_PRIMES = (5, 7, 11)
HARD_PRIMES = (13,)
# Corpus version 10: the corpus's linmod pool also holds this many p = 13 problems per ID one.
# Without any (v8, v9) the organism never wrote a modulus it had not seen in a search slot.
HARD_PRETRAIN_SHARE = 0.1


@dataclass(frozen=True)
class Task:
    """One procedural problem: `kind` names its shape, `x` is the candidate of a check task."""

    kind: str  # "linmod", "sqmod", "narrow" or "check"
    p: int
    a: int
    b: int
    c: int
    x: int | None = None

    @property
    def key(self) -> str:
        tail = f"-x{self.x}" if self.x is not None else ""
        return f"{self.kind}-p{self.p}-a{self.a}-b{self.b}-c{self.c}{tail}"


def lhs(task: Task, x: int) -> int:
    """The left-hand side evaluated at `x` (the quantity a check computes)."""
    if task.kind == "sqmod":
        return (x * x + task.b) % task.p
    return (task.a * x + task.b) % task.p


def brute_force_answer(task: Task) -> int:
    """The answer by exhaustive search, independent of any trace writer."""
    if task.kind == "narrow":
        return (task.a * task.b + task.c) % task.p
    if task.kind == "check":
        return int(lhs(task, task.x) == task.c)
    solutions = [x for x in range(task.p) if lhs(task, x) == task.c]
    if task.kind == "linmod" and len(solutions) != 1:
        raise ValueError(f"{task.key}: expected a unique solution, found {solutions}")
    return solutions[0]


def equation(task: Task) -> str:
    """The equation as the question states it and every check copies it, verbatim."""
    left = "x*x" if task.kind == "sqmod" else f"{task.a}*x"
    return f"{left} + {task.b} = {task.c} (mod {task.p})"


def lookups(p: int, factor: int, value: int, addend: int) -> tuple[str, int]:
    """`factor*value=r, r+addend=s` with every result reduced mod p: one product, one sum."""
    product = factor * value % p
    total = (product + addend) % p
    return f"{factor}*{value}={product}, {product}+{addend}={total}", total


def chain(task: Task, x: int) -> str:
    """The check of candidate `x`: the question's equation copied verbatim, its lookups, the
    verdict (`x=3: 4*x + 9 = 5 (mod 7): 4*3=5, 5+9=0. 0 vs 5? no.`)."""
    steps, value = lookups(task.p, x if task.kind == "sqmod" else task.a, x, task.b)
    return f"x={x}: {equation(task)}: {steps}. {value} vs {task.c}? {'yes' if value == task.c else 'no'}."


def example_candidate(task: Task) -> int:
    """The candidate of the question's worked example: a fixed wrong one (by the problem's key),
    so the example shows how to check without giving the answer away."""
    wrong = [x for x in range(task.p) if lhs(task, x) != task.c and x != task.x]
    return wrong[int(hashlib.sha256(f"example:{task.key}".encode()).hexdigest()[:8], 16) % len(wrong)]


def question_text(task: Task, *, example: bool = True) -> str:
    """The question; every family but `narrow` ends with a worked check of a wrong candidate in
    the checks' own format, which the first check of a response can repeat (docs/organism.md).
    `example=False` leaves it out (`linmod-bare`: a form no corpus question has)."""
    if task.kind == "narrow":
        return f"Compute ({task.a}*{task.b} + {task.c}) mod {task.p}. {INSTRUCTION}"
    if task.kind == "linmod":
        body = f"Solve for x in 0..{task.p - 1}: {equation(task)}."
    elif task.kind == "sqmod":
        body = f"Solve for the smallest x in 0..{task.p - 1}: {equation(task)}."
    else:
        body = f"Does x={task.x} solve {equation(task)}? Answer 1 for yes or 0 for no."
    if not example:
        return f"{body} {INSTRUCTION}"
    return f"{body} For example, {chain(task, example_candidate(task))} {INSTRUCTION}"


def split_of(key: str) -> str:
    """A stable hash partition: 40% pretrain, 40% train, 20% eval."""
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 10
    return "eval" if bucket < 2 else "train" if bucket < 6 else "pretrain"


def _linmod_tasks(primes: tuple[int, ...]) -> list[Task]:
    return [Task("linmod", p, a, b, c) for p in primes for a in range(1, p) for b in range(p) for c in range(p)]


def _sqmod_tasks() -> list[Task]:
    """Only right-hand sides that have a solution: every problem is answerable."""
    return [Task("sqmod", p, 0, b, c) for p in ID_PRIMES for b in range(p) for c in range(p) if any((x * x + b) % p == c for x in range(p))]


def _narrow_tasks() -> list[Task]:
    return [Task("narrow", p, a, b, c) for p in ID_PRIMES for a in range(1, p) for b in range(p) for c in range(p)]


def _check_tasks() -> list[Task]:
    """One right and one wrong candidate per linmod problem (the wrong one fixed by the key)."""
    tasks = []
    for t in _linmod_tasks(ID_PRIMES):
        right = brute_force_answer(t)
        wrong = (right + 1 + int(hashlib.sha256(t.key.encode()).hexdigest()[:8], 16) % (t.p - 1)) % t.p
        tasks += [Task("check", t.p, t.a, t.b, t.c, x=right), Task("check", t.p, t.a, t.b, t.c, x=wrong)]
    return tasks


@lru_cache(maxsize=None)
def family_tasks(family: str) -> tuple[Task, ...]:
    """All problems of a family name such as `linmod`, `linmod-eval`, `linmod-pretrain`, `sqmod`."""
    base, _, split = family.partition("-")
    if family in SAME_PROBLEMS_AS:
        return family_tasks(SAME_PROBLEMS_AS[family])
    if family in EVAL_ONLY_FAMILIES:
        return tuple(t for t in _linmod_tasks(HARD_PRIMES) if split_of(t.key) == "eval") if family == "linmod-hard" else tuple(_sqmod_tasks())
    if base not in SPLIT_FAMILIES or (split and split not in SPLITS):
        raise SdlabError(f"unknown organism family {family!r}; known: {', '.join(known_families())}")
    tasks = {"linmod": _linmod_tasks(ID_PRIMES), "narrow": _narrow_tasks(), "check": _check_tasks()}[base]
    split = split or "train"
    # check tasks share their linmod problem's split, so a probe never checks a trained problem
    chosen = tuple(t for t in tasks if split_of(t.key.split("-x")[0].replace("check", "linmod", 1)) == split)
    return chosen + _hard_pretrain_tasks(int(HARD_PRETRAIN_SHARE * len(chosen))) if family == "linmod-pretrain" else chosen


def _hard_pretrain_tasks(n: int) -> tuple[Task, ...]:
    """The corpus's `n` p = 13 problems: the first of a fixed shuffle of p = 13's pretrain split."""
    pool = [t for t in _linmod_tasks(HARD_PRIMES) if split_of(t.key) == "pretrain"]
    random.Random("p13").shuffle(pool)
    return tuple(pool[:n])


def known_families() -> list[str]:
    return [f"{base}{suffix}" for base in SPLIT_FAMILIES for suffix in ("", "-eval", "-pretrain")] + list(EVAL_ONLY_FAMILIES)


def sample_tasks(family: str, n: int, *, seed: int = 0) -> list[Task]:
    """`n` distinct problems of `family`: the first `n` of a seeded permutation (nested in n)."""
    pool = list(family_tasks(family))
    if n > len(pool):
        raise SdlabError(f"organism family {family!r} has {len(pool)} distinct problems; asked for {n}")
    random.Random(f"{SAME_PROBLEMS_AS.get(family, family)}:{seed}").shuffle(pool)
    return pool[:n]
