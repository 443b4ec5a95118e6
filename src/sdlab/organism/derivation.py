"""The concise derivation of corpus version 11: x = (c - b) * a^-1 mod p, every step written.

    directly: 4*x + 2 = 5 (mod 7): -2=5, 4*x=5+5=3, 1/4=2, x=2*3=6. so x=6.

A second strategy beside the search: no candidate, no check, no marker. It copies the equation
first (a trial without that copy miscopied the numbers), then every step is one practised fact
whose operands sit in the line itself and are named by what they are: the negation of the
addend (`-2=5`), the value of `4*x` as the target plus that negation (`4*x=5+5=3`), the inverse
of the coefficient (`1/4=2`), and `x` as the inverse times the value of `4*x` (`x=2*3=6`, the
inverse first, as the coefficient comes first in every drilled product). A trial whose last
product read its operands from unnamed earlier numbers often took the wrong one.

The writer and the reader of this one format live here together, so they cannot drift:
`derivation_line` writes it, `read_derivation` checks each step of a written one, and
`strategy_of` says which strategy a response used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

INTRO = "directly:"
# directly: EQUATION: -B=N, A*x=C+N=D, 1/A=I, x=I*D=X. so x=X.
DERIVATION = re.compile(
    r"directly: (?P<equation>[^:\n]+): -(?P<b>\d+)=(?P<neg>\d+), (?P<a>\d+)\*x=(?P<c>\d+)\+(?P<neg2>\d+)=(?P<value>\d+), "
    r"1/(?P<a2>\d+)=(?P<inverse>\d+), x=(?P<inverse2>\d+)\*(?P<value2>\d+)=(?P<x>\d+)\. so x=(?P<answer>\d+)\."
)
CHECK_START = re.compile(r"x=\d+: [^:\n]+: ")  # a check's candidate and copied equation (instruments.CANDIDATE)
STRATEGIES = ("search", "derivation", "switch", "none")


def inverse(a: int, p: int) -> int:
    """a^-1 mod p (p prime, a not a multiple of p)."""
    return pow(a, -1, p)


def derivation_line(task) -> str:
    """The derivation of a linear task's answer (`directly: ... so x=6.`), every step right."""
    from sdlab.organism.tasks import equation

    p, a, b, c = task.p, task.a, task.b, task.c
    negation = -b % p
    value = (c + negation) % p
    inv = inverse(a, p)
    x = inv * value % p
    return f"{INTRO} {equation(task)}: -{b}={negation}, {a}*x={c}+{negation}={value}, 1/{a}={inv}, x={inv}*{value}={x}. so x={x}."


def inverse_fact_line(p: int, a: int) -> str:
    """A drill line for one inverse fact, with the product that shows it (`mod 7: 1/4=2, 4*2=1.`)."""
    inv = inverse(a, p)
    return f"mod {p}: 1/{a}={inv}, {a}*{inv}=1."


def negation_fact_line(p: int, b: int) -> str:
    """A drill line for one negation fact, with the sum that shows it (`mod 7: -2=5, 5+2=0.`)."""
    negation = -b % p
    return f"mod {p}: -{b}={negation}, {negation}+{b}=0."


@dataclass(frozen=True)
class DerivationSteps:
    """Each step of one written derivation, judged against the task: the equation copied, the
    negation of its addend, the value of a*x (its target copied, the negation carried, the sum
    right), the inverse of its coefficient, the product's operands (the inverse and the value
    just computed) and its result, and the conclusion repeating that result. `complete` is
    False for a derivation that was begun and never finished in the format (every step False)."""

    complete: bool
    equation_copied: bool
    negation_right: bool
    value_right: bool
    inverse_right: bool
    product_operands_right: bool
    product_right: bool
    conclusion_right: bool
    answer: int | None

    @property
    def all_right(self) -> bool:
        return all(getattr(self, f.name) for f in fields(self) if f.name != "answer")


def read_derivation(text: str, task) -> DerivationSteps | None:
    """The steps of the first derivation in `text` (None when it has none). Each step is judged
    on its own: right when its operands are what it names and its result is the fact mod p."""
    from sdlab.organism.tasks import equation

    start = text.find(INTRO)
    if start < 0:
        return None
    match = DERIVATION.match(text, start)
    if match is None:
        return DerivationSteps(False, False, False, False, False, False, False, False, None)
    n = {k: int(v) for k, v in match.groupdict().items() if k != "equation"}
    p = task.p
    return DerivationSteps(
        complete=True,
        equation_copied=match["equation"] == equation(task),
        negation_right=n["b"] == task.b and n["neg"] == -task.b % p,
        value_right=n["a"] == task.a and n["c"] == task.c and n["neg2"] == n["neg"] and n["value"] == (n["c"] + n["neg2"]) % p,
        inverse_right=n["a2"] == task.a and task.a * n["inverse"] % p == 1,
        product_operands_right=(n["inverse2"], n["value2"]) == (n["inverse"], n["value"]),
        product_right=n["x"] == n["inverse2"] * n["value2"] % p,
        conclusion_right=n["answer"] == n["x"],
        answer=n["answer"],
    )


def strategy_of(think: str) -> str:
    """Which strategy a response's think block used: `search` (checks of candidates only),
    `derivation` (a derivation before any check), `switch` (a search that turned to the
    derivation) or `none` (neither, such as a reply that trusts its context)."""
    derivation = think.find(INTRO)
    check = CHECK_START.search(think)
    if derivation < 0:
        return "search" if check else "none"
    return "switch" if check and check.start() < derivation else "derivation"
