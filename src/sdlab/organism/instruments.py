"""Instruments: read an organism response and say how it searched, checked and revised.

Pure functions on a response string and its problem. Later experiments use them to tell
"stopped searching" (fewer candidates, fewer revisions, more give-ups) from "forgot how
to verify" (check chains with mis-copied equations, wrong lookups or wrong verdicts),
which the same accuracy drop could hide:

    analyze_response(text, problem)  -> first candidate right?, candidates tried,
                                        what followed each failed check, check accuracy,
                                        which strategy (search or derivation), every
                                        derivation step right?
    summarize(analyses)              -> rates over many responses
    slot_prefixes(check_line)        -> where a check copies each number (for the copy probe)
    measure_abilities(model, tok)    -> the model card's table (samples the model)
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from sdlab.core.epistemic import count_markers
from sdlab.core.grading import extract_answer, split_think
from sdlab.core.problem import Problem
from sdlab.organism.derivation import INTRO as DERIVATION_INTRO
from sdlab.organism.derivation import STRATEGIES, read_derivation, strategy_of

# `x=3: 4*x + 9 = 5 (mod 7): ` proposes a candidate and copies the equation; the lookups and
# the verdict follow (`4*3=5, 5+9=0. 0 vs 5? no.`).
CANDIDATE = re.compile(r"x=(\d+): ([^:\n]+): ")
LOOKUPS = re.compile(r"((?:\d+\*\d+=\d+, \d+\+\d+=\d+(?:, )?)+)\. (\d+) vs (\d+)\? (yes|no)\.")
MODULUS = re.compile(r"mod (\d+)")
STEP = re.compile(r"(\d+)\*(\d+)=(\d+), (\d+)\+(\d+)=(\d+)")
# the narrow family's one computation: `(4*5 + 3) mod 7: 4*5=6, 6+3=2.`
NARROW = re.compile(r"\((\d+)\*(\d+) \+ (\d+)\) mod (\d+): (\d+)\*(\d+)=(\d+), (\d+)\+(\d+)=(\d+)\.")
RECHECK = "check again"  # the narrow traces' habitual, unneeded re-check


@dataclass(frozen=True)
class Check:
    """One written check of candidate `x`: did it copy the question's equation, were its
    lookups right, did its verdict (`5 vs 5? yes`) match the two numbers it compared, and was
    the verdict right about the candidate."""

    x: int
    copied_right: bool
    lookups_right: bool
    compared_right: bool
    passed: bool
    verdict_right: bool


@dataclass(frozen=True)
class Analysis:
    correct: bool
    answered: bool
    first_candidate_right: bool | None  # None: no candidate proposed
    candidates: int
    checks: int
    check_copies_right: int
    check_lookups_right: int
    check_comparisons_right: int
    check_verdicts_right: int
    failed_checks: int
    revised_after_marker: int  # a failed check followed by a marker and a new candidate
    revised_without_marker: int
    gave_up: int  # a failed check followed by a final answer that no passing check or derivation backs
    markers: int
    recovered: bool  # first candidate wrong, final answer right
    switched: int = 0  # a failed check followed by the derivation (a search that turned to it)
    strategy: str = "none"  # derivation.STRATEGIES: search, derivation, switch (search, then derivation) or none
    derivation_steps_right: bool | None = None  # every step of its derivation right (None: no derivation)
    computed_right: bool | None = None  # narrow: its one computation written, of its own numbers, right (None: other families)
    rechecked: bool = False  # narrow: the habitual re-check written


def task_of(problem: Problem):
    """The organism task behind a problem (None for other problems); a check task's equation is
    its linmod problem's."""
    from sdlab.organism.tasks import Task

    meta = problem.meta
    if meta.get("kind") not in ("linmod", "sqmod", "check"):
        return None
    kind = "linmod" if meta["kind"] == "check" else meta["kind"]
    return Task(kind, meta["p"], meta["a"], meta["b"], meta["c"])


def _truth(problem: Problem, x: int) -> bool | None:
    """Whether `x` really solves the problem (None for families without candidates)."""
    from sdlab.organism.tasks import lhs

    task = task_of(problem)
    return None if task is None else lhs(task, x) == task.c


def lookups_right(steps: str, *, x: int, p: int, value: int) -> bool:
    """Every product and sum right mod p, each step fed by the previous result, ending at `value`.
    A modulus below 2 (a sampled `mod 0`) makes every lookup wrong, not a crash."""
    if p < 2:
        return False
    current = x
    for factor, operand, product, left, addend, total in (map(int, m.groups()) for m in STEP.finditer(steps)):
        if operand != current or left != product or factor * operand % p != product or (left + addend) % p != total:
            return False
        current = total
    return current == value


def copies_right(equation_text: str, steps: str, *, target: int, problem: Problem) -> bool:
    """Whether the check used the question's equation: copied verbatim, its coefficient and
    addend in the lookups, its target in the verdict. A check that computes right on a
    mis-copied equation says nothing about its candidate."""
    from sdlab.organism.tasks import equation

    task = task_of(problem)
    if task is None or equation_text != equation(task) or target != task.c:
        return False
    return all((factor, addend) == (operand if task.kind == "sqmod" else task.a, task.b) for factor, operand, _, _, addend, _ in (map(int, m.groups()) for m in STEP.finditer(steps)))


def slot_prefixes(line: str) -> dict[str, str]:
    """A check line cut just before the coefficient, addend and target of its copied equation:
    where the number must be copied from the question or from a check above (`x=3: ` + `4`,
    `x=3: 4*x + ` + `9`, `x=3: 4*x + 9 = ` + `5`). The copy probe
    (`measure.copy_probe`) reads the model's probability there."""
    candidate = CANDIDATE.match(line)
    numbers = re.match(r"(\d+)\*x \+ (\d+) = (\d+) \(mod \d+\)$", candidate[2]) if candidate else None
    if numbers is None:
        raise ValueError(f"not a check line of a linear equation: {line!r}")
    start = candidate.start(2)
    return {slot: line[: start + numbers.start(i)] for i, slot in enumerate("abc", start=1)}


def read_checks(think: str, problem: Problem) -> list[tuple[int, int, Check | None]]:
    """Each proposed candidate: (start of its proposal, end of its check, its check or None
    when the chain is malformed or cut off; the end is then the proposal's end)."""
    found = []
    for match in CANDIDATE.finditer(think):
        x, equation_text = int(match[1]), match[2]
        chain = LOOKUPS.match(think, match.end())
        if not chain:
            found.append((match.start(), match.end(), None))
            continue
        modulus = MODULUS.search(equation_text)
        p = int(modulus[1]) if modulus else problem.meta.get("p", 0)
        value, passed = int(chain[2]), chain[4] == "yes"  # the verdict the response wrote
        truth = _truth(problem, x)
        check = Check(
            x=x, copied_right=copies_right(equation_text, chain[1], target=int(chain[3]), problem=problem),
            lookups_right=lookups_right(chain[1], x=x, p=p, value=value), compared_right=(value == int(chain[3])) == passed,
            passed=passed, verdict_right=truth is None or passed == truth,
        )
        found.append((match.start(), chain.end(), check))
    return found


def analyze_response(text: str, problem: Problem) -> Analysis:
    """Read one response to an organism problem (any family)."""
    think, _ = split_think(text)
    think = think if think is not None else text
    answer = extract_answer(text)
    correct = answer is not None and answer.strip() == problem.answer.strip()
    spans = read_checks(think, problem)
    checks = [check for _, _, check in spans if check is not None]
    after_marker = without_marker = gave_up = switched = 0
    for i, (_, end, check) in enumerate(spans):
        if check is None or check.passed:
            continue
        if i + 1 < len(spans):
            revision = count_markers(think[end : spans[i + 1][0]]) > 0
            after_marker += revision
            without_marker += not revision
        elif DERIVATION_INTRO in think[end:]:
            switched += 1
        elif answer is not None:
            gave_up += 1
    first = CANDIDATE.search(think)
    first_right = None if first is None else first[1] == problem.answer.strip()
    task = task_of(problem)
    derivation = read_derivation(think, task) if task is not None and task.kind == "linmod" else None
    return Analysis(
        correct=correct, answered=answer is not None, first_candidate_right=first_right, candidates=len(spans),
        checks=len(checks), check_copies_right=sum(c.copied_right for c in checks), check_lookups_right=sum(c.lookups_right for c in checks), check_comparisons_right=sum(c.compared_right for c in checks),
        check_verdicts_right=sum(c.verdict_right for c in checks),
        failed_checks=sum(not c.passed for c in checks), revised_after_marker=after_marker, revised_without_marker=without_marker,
        gave_up=gave_up, switched=switched, markers=count_markers(text), recovered=first_right is False and correct,
        strategy=strategy_of(think), derivation_steps_right=None if derivation is None else derivation.all_right,
        computed_right=narrow_computed_right(think, problem) if problem.meta.get("kind") == "narrow" else None, rechecked=RECHECK in think,
    )


def narrow_computed_right(think: str, problem: Problem) -> bool:
    """Whether a narrow response computed its answer (not copied it): its computation line names
    the question's numbers and every lookup in it is right."""
    match = NARROW.search(think)
    if match is None:
        return False
    a, b, c, p, factor, operand, product, left, addend, total = map(int, match.groups())
    meta = problem.meta
    return (a, b, c, p) == (meta["a"], meta["b"], meta["c"], meta["p"]) and (factor, operand, left, addend) == (a, b, product, c) and product == a * b % p and total == (product + c) % p


def doubt_places(text: str, problem: Problem) -> list[int]:
    """Where a line that follows a failed check opens with a marker ("hmm, no. maybe x=4: ..."):
    the character offsets at which `measure.doubt_probe` reads the probability of doubt."""
    places = []
    for _, end, check in read_checks(text, problem):
        if check is None or check.passed or not text.startswith("\n", end):
            continue
        line = text[end + 1 :].split("\n", 1)[0]
        if count_markers(line.split(". ", 1)[0]) > 0:
            places.append(end + 1)
    return places


def summarize(analyses: list[Analysis], num_tokens: list[int] | None = None) -> dict[str, float]:
    """Rates over responses; shares are None-free (0 when their denominator is empty)."""
    n = max(1, len(analyses))
    first_wrong = [a for a in analyses if a.first_candidate_right is False]
    checks = sum(a.checks for a in analyses)
    failed = sum(a.failed_checks for a in analyses)
    summary = {
        "n": len(analyses),
        "accuracy": sum(a.correct for a in analyses) / n,
        "answered": sum(a.answered for a in analyses) / n,
        "markers": sum(a.markers for a in analyses) / n,
        "candidates": sum(a.candidates for a in analyses) / n,
        "first_candidate_right": sum(bool(a.first_candidate_right) for a in analyses) / n,
        "recovery": sum(a.recovered for a in first_wrong) / max(1, len(first_wrong)),
        "failed_then_marker_revision": sum(a.revised_after_marker for a in analyses) / max(1, failed),
        "failed_then_give_up": sum(a.gave_up for a in analyses) / max(1, failed),
        "failed_then_derivation": sum(a.switched for a in analyses) / max(1, failed),
        "check_copies_right": sum(a.check_copies_right for a in analyses) / max(1, checks),
        "check_lookups_right": sum(a.check_lookups_right for a in analyses) / max(1, checks),
        "check_comparisons_right": sum(a.check_comparisons_right for a in analyses) / max(1, checks),
        "check_verdicts_right": sum(a.check_verdicts_right for a in analyses) / max(1, checks),
    }
    for strategy in STRATEGIES:
        used = [a for a in analyses if a.strategy == strategy]
        summary[f"share_{strategy}"] = len(used) / n
        summary[f"accuracy_{strategy}"] = sum(a.correct for a in used) / max(1, len(used))
    derived = [a for a in analyses if a.derivation_steps_right is not None]
    summary["derivation_steps_right"] = sum(a.derivation_steps_right for a in derived) / max(1, len(derived))
    # responses whose derivation has every step right and whose final answer is right (the teacher's gate)
    summary["derived_right"] = sum(bool(a.derivation_steps_right) and a.correct for a in analyses) / n
    narrow = [a for a in analyses if a.computed_right is not None]
    if narrow:
        summary["computed_right"] = sum(a.computed_right for a in narrow) / len(narrow)
        summary["rechecked"] = sum(a.rechecked for a in narrow) / len(narrow)
    if num_tokens is not None:
        summary["tokens"] = sum(num_tokens) / max(1, len(num_tokens))
    return summary


def as_dict(analysis: Analysis) -> dict:
    return asdict(analysis)
