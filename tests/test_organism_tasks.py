"""Organism task families: answers checked by an independent solver, splits disjoint, specs parsed."""

from __future__ import annotations

import itertools

import pytest

from sdlab import SdlabError
from sdlab.core.problem import Problem
from sdlab.organism.problems import load_organism_problems
from sdlab.organism.tasks import family_tasks, known_families, lhs, question_text, sample_tasks


def solve_from_question(question: str) -> int:
    """An independent solver: parse the question text and search every x (not the trace writer)."""
    import re

    if question.startswith("Compute"):
        a, b, c, p = map(int, re.match(r"Compute \((\d+)\*(\d+) \+ (\d+)\) mod (\d+)\.", question).groups())
        return (a * b + c) % p
    if question.startswith("Does"):
        x, a, b, c, p = map(int, re.match(r"Does x=(\d+) solve (\d+)\*x \+ (\d+) = (\d+) \(mod (\d+)\)\?", question).groups())
        return int((a * x + b) % p == c)
    factor, b, c, p = re.match(r"Solve for (?:the smallest )?x in 0\.\.\d+: (\d+|x)\*x \+ (\d+) = (\d+) \(mod (\d+)\)\.", question).groups()
    b, p, c = int(b), int(p), int(c)
    return next(x for x in range(p) if ((x * x if factor == "x" else int(factor) * x) + b) % p == c)


def test_the_worked_example_checks_a_wrong_candidate_in_the_checks_format() -> None:
    """Every question but narrow's shows one check line of a wrong candidate: the first check of
    a response can repeat it, and it never gives the answer away."""
    import re

    from sdlab.organism.corpus import chain
    from sdlab.organism.tasks import example_candidate

    for family in ("linmod", "linmod-hard", "sqmod", "check-eval"):
        for task in sample_tasks(family, 60):
            x = example_candidate(task)
            assert lhs(task, x) != task.c and x != task.x
            assert f"For example, {chain(task, x)} " in question_text(task) and chain(task, x).endswith("? no.")
    assert not re.search(r"For example", question_text(sample_tasks("narrow", 1)[0]))


def test_bare_problems_are_the_eval_problems_without_their_example() -> None:
    """linmod-bare pairs with linmod-eval: the same problems in the same order, asked in a form
    no corpus question has, under their own ids."""
    from sdlab.organism.corpus import corpus_documents

    bare, held_out = load_organism_problems("organism:linmod-bare:40"), load_organism_problems("organism:linmod-eval:40")
    for b, e in zip(bare, held_out):
        assert b.answer == e.answer and b.id == f"{e.id}-bare" and b.meta["p"] == e.meta["p"]
        assert "For example" not in b.question and e.question.startswith(b.question.split(" Please")[0])
    asked = {d["messages"][0]["content"] for d in corpus_documents(300, seed=0) if "messages" in d}
    assert all("For example" in q or q.startswith("Compute") for q in asked)


@pytest.mark.parametrize("family", ["linmod", "linmod-eval", "linmod-bare", "linmod-hard", "sqmod", "narrow", "check-eval"])
def test_answers_match_an_independent_solver(family: str) -> None:
    for problem in load_organism_problems(f"organism:{family}:100"):
        assert int(problem.answer) == solve_from_question(problem.question), problem.id
        assert "\\boxed{}" in problem.question


def test_linmod_solutions_are_unique_and_the_train_split_covers_the_coverage_sweep() -> None:
    tasks = family_tasks("linmod") + family_tasks("linmod-eval") + family_tasks("linmod-pretrain")
    assert len([t for t in tasks if t.p != 13]) == 1604 and len(family_tasks("linmod")) > 512  # the sweep's largest subset
    for task in tasks[::37] + family_tasks("linmod-hard")[::37]:
        assert sum(lhs(task, x) == task.c for x in range(task.p)) == 1


def test_splits_are_disjoint_and_ood_families_are_never_in_a_training_split() -> None:
    for base in ("linmod", "narrow", "check"):
        splits = [{t.key for t in family_tasks(f"{base}{suffix}")} for suffix in ("", "-eval", "-pretrain")]
        for left, right in itertools.combinations(splits, 2):
            assert not left & right
    checked = {t.key.split("-x")[0].replace("check", "linmod", 1) for t in family_tasks("check-eval")}
    assert checked <= {t.key for t in family_tasks("linmod-eval")}
    # linmod-hard is p = 13, which post-training never sees; the corpus searches a tenth as many
    # p = 13 problems as ID ones, none of them a linmod-hard problem
    hard, corpus = family_tasks("linmod-hard"), family_tasks("linmod-pretrain")
    assert {t.p for t in hard} == {13} and {t.p for t in family_tasks("linmod") + family_tasks("linmod-eval")} == {5, 7, 11}
    assert not {t.key for t in hard} & {t.key for t in corpus}
    assert sum(t.p == 13 for t in corpus) == int(0.1 * sum(t.p != 13 for t in corpus)) > 0
    assert {t.kind for t in family_tasks("sqmod")} == {"sqmod"}


def test_spec_counts_repeats_seeds_and_nesting() -> None:
    one = load_organism_problems("organism:linmod:1x64")
    assert len(one) == 64 and len({p.id for p in one}) == 1
    eight = load_organism_problems("organism:linmod:8x8")
    assert len(eight) == 64 and len({p.id for p in eight}) == 8
    assert [p.id for p in eight[:8]] == [p.id for p in eight[8:16]]  # round-robin
    big = load_organism_problems("organism:linmod:512")
    assert len({p.id for p in big}) == 512
    assert [p.id for p in big[:8]] == [p.id for p in eight[:8]]  # nested in N
    assert [p.id for p in load_organism_problems("organism:linmod:8:1")] != [p.id for p in eight[:8]]
    assert all(isinstance(p, Problem) and p.source == "organism:linmod" and p.solution for p in big[:5])


def test_sampling_is_deterministic() -> None:
    assert sample_tasks("linmod", 50, seed=3) == sample_tasks("linmod", 50, seed=3)


@pytest.mark.parametrize("spec", ["organism:linmod", "organism:nope:5", "organism:linmod:0", "organism:linmod-hard:999999", "organism:linmod:5:x"])
def test_bad_specs_say_what_to_write(spec: str) -> None:
    with pytest.raises(SdlabError, match="organism"):
        load_organism_problems(spec)


def test_known_families_all_load() -> None:
    for family in known_families():
        assert load_organism_problems(f"organism:{family}:3")


def test_data_load_problems_delegates_to_the_organism() -> None:
    from sdlab.core.data import load_problems

    assert [p.id for p in load_problems("organism:linmod:4")] == [p.id for p in load_organism_problems("organism:linmod:4")]
