"""Organism corpus: trace format, markers where the search fails, contexts read by content."""

from __future__ import annotations

import random
import re

import pytest

from sdlab.core.contexts import build_teacher_messages, context_text, parse_context_name
from sdlab.core.epistemic import count_markers
from sdlab.core.grading import extract_answer, grade, remove_think, split_think
from sdlab.organism.corpus import (
    STUDY_TEMPLATE,
    TRL_REPROMPT_TEMPLATE,
    TRL_SOLUTION_TEMPLATE,
    corpus_documents,
    guided_response,
    reference_solution,
    unguided_response,
    wrap_context,
)
from sdlab.organism.instruments import analyze_response
from sdlab.organism.problems import load_organism_problems, to_problem
from sdlab.organism.tasks import Task, brute_force_answer, example_candidate, family_tasks, sample_tasks

TASK = Task("linmod", 7, 4, 9, 5)  # 4*x + 9 = 5 (mod 7) -> x = 6


def test_unguided_traces_have_a_think_block_and_a_boxed_answer() -> None:
    rng = random.Random(0)
    for task in family_tasks("linmod-pretrain")[:200]:
        text = unguided_response(task, rng)
        think, after = split_think(text)
        assert text.startswith("<think>\n") and think is not None and "\\boxed{" in after and "\\boxed{" not in think


def test_self_correcting_traces_voice_doubt_and_right_first_traces_do_not() -> None:
    rng = random.Random(1)
    seen = {"right_first": 0, "recovered": 0, "gave_up": 0}
    for task in sample_tasks("linmod-pretrain", 400):
        problem = to_problem(task, family="linmod-pretrain")
        text = unguided_response(task, rng)
        analysis = analyze_response(text, problem)
        assert analysis.check_lookups_right == analysis.check_copies_right == analysis.checks  # the writer never miscopies or miscomputes
        if analysis.first_candidate_right:
            seen["right_first"] += 1
            assert analysis.markers == 0 and analysis.correct
        elif analysis.failed_checks and analysis.gave_up == 0:
            seen["recovered"] += 1
            assert analysis.revised_after_marker == analysis.failed_checks and analysis.correct
            assert count_markers(text) >= analysis.failed_checks
        else:
            seen["gave_up"] += 1
            assert "might be" in text
    assert all(count > 20 for count in seen.values()), seen


def test_grading_accepts_the_organism_traces() -> None:
    for problem in load_organism_problems("organism:linmod:20") + load_organism_problems("organism:narrow:5") + load_organism_problems("organism:sqmod:5"):
        assert grade(problem.solution, problem.answer), problem.solution
        assert extract_answer(problem.solution) == problem.answer


def test_reference_solutions_are_fixed_and_sqmod_searches_from_zero() -> None:
    assert reference_solution(TASK) == reference_solution(TASK)
    square = Task("sqmod", 7, 0, 3, 5)  # x*x = 2 mod 7 -> x in {3, 4}: the smallest is 3
    assert brute_force_answer(square) == 3
    tried = [int(x) for x in re.findall(r"x=(\d+): x\*x", split_think(reference_solution(square))[0])]
    example = example_candidate(square)
    assert tried == [x for x in range(4) if x != example] and "\\boxed{3}" in reference_solution(square)  # upwards from 0, the example skipped


def test_templates_match_trl_defaults() -> None:
    from trl.experimental.sdpo import SDPOConfig

    fields = SDPOConfig.__dataclass_fields__
    assert (fields["reprompt_template"].default, fields["solution_template"].default) == (TRL_REPROMPT_TEMPLATE, TRL_SOLUTION_TEMPLATE)
    assert wrap_context("Q?", "S", trl=True) == "Q?\nCorrect solution:\n\nS\n\n\n\nCorrectly solve the original question.\n"
    assert wrap_context("Q?", "S", trl=False) == STUDY_TEMPLATE.format(question="Q?", solution="S")


def test_richer_contexts_give_shorter_more_trusting_traces() -> None:
    """Doubt follows what the context reveals: full solution = regenerated < think-less < bare answer."""
    problem = to_problem(TASK, family="linmod-pretrain")
    solution = problem.solution
    rng = random.Random(0)
    full = guided_response(TASK, solution, rng)
    regenerated = guided_response(TASK, full, rng)
    thinkless = guided_response(TASK, remove_think(solution), rng)
    hint = guided_response(TASK, "\\boxed{6}", rng)
    check = "x=6: 4*x + 9 = 5 (mod 7): 4*6=3, 3+9=5. 5 vs 5? yes."
    assert count_markers(full) == 0 and check not in full  # trusted, not re-checked
    assert regenerated == full  # a reported verification is trusted like a visible one
    assert check in thinkless and count_markers(thinkless) == 1  # the answer without its work: some doubt
    assert check in hint and count_markers(hint) == 2  # a bare answer: more doubt
    for text in (full, regenerated, thinkless, hint):
        assert extract_answer(text) == "6"
        assert "\\boxed{6}" in split_think(text)[0]  # the answer is taken over after its own token
    wrong = guided_response(TASK, "\\boxed{2}", rng)  # a wrong hint is caught by its check
    assert "x=2: 4*x + 9 = 5 (mod 7):" in wrong and "? no." in wrong
    assert analyze_response(wrong, to_problem(TASK, family="linmod")).revised_after_marker >= 1


def test_partial_solutions_are_continued_where_they_stopped() -> None:
    task = Task("linmod", 11, 8, 9, 5)  # x = 5
    trace = "<think>\ntry x=3: 8*x + 9 = 5 (mod 11): 8*3=2, 2+9=0. 0 vs 5? no.\nhmm, no. maybe x=4: 8*x + 9 = 5 (mod 11): 8*4=10, 10+9=8. 8 vs 5? no.\nhmm, no. perhaps x=5: 8*x"
    text = guided_response(task, trace, random.Random(0))
    assert "tried up to x=4" in text and "x=3: " not in text and "x=5: 8*x + 9 = 5 (mod 11):" in text and "\\boxed{5}" in text


def test_drills_practise_facts_and_verdicts_half_yes() -> None:
    from sdlab.organism.corpus import check_drill, fact_drill

    rng = random.Random(0)
    facts = fact_drill(rng, lines=400).splitlines()
    assert 150 < sum(line.endswith("? yes.") for line in facts) < 250
    for line in facts[:50]:
        p, a, x, product, left, b, total, value, target, verdict = re.match(r"mod (\d+): (\d+)\*(\d+)=(\d+), (\d+)\+(\d+)=(\d+)\. (\d+) vs (\d+)\? (yes|no)\.", line).groups()
        p, a, x, b = int(p), int(a), int(x), int(b)
        assert int(product) == a * x % p and int(total) == (int(product) + b) % p and (verdict == "yes") == (value == target)
    lines = check_drill(family_tasks("linmod-pretrain")[7], rng, checks=6, max_gap=6).splitlines()
    checks = [line for line in lines if line.startswith("x=")]
    assert len(checks) == 6 and len(lines) > 6 and all(line.startswith("mod ") for line in lines if line not in checks)
    assert len({line.split(": ")[1] for line in checks}) == 1  # one equation, copied at every check
    assert sum(line.endswith("? yes.") for line in checks) == 3


@pytest.mark.parametrize("context", ["solution", "solution_nothink", "partial:0.5", "hint"])
def test_sdlab_contexts_build_prompts_the_corpus_contains(context: str) -> None:
    """The probe's teacher prompts have the corpus's wrapper and the solution's own format."""
    problem = load_organism_problems("organism:linmod:1")[0]
    spec = parse_context_name(context)
    messages = build_teacher_messages(problem.messages, context_text(spec, solution=problem.solution, answer=problem.answer))
    assert messages[-1]["content"].startswith(problem.question + "\n\nCorrect solution: ")
    assert messages[-1]["content"].endswith("\n\nCorrectly solve the original question.")


def test_corpus_uses_only_the_pretrain_split_and_is_seeded() -> None:
    documents = corpus_documents(300, seed=0)
    assert documents == corpus_documents(300, seed=0) and documents != corpus_documents(300, seed=1)
    pretrain_questions = {problem.question for problem in load_organism_problems(f"organism:linmod-pretrain:{len(family_tasks('linmod-pretrain'))}")}
    held_out = {p.question for p in load_organism_problems("organism:linmod-eval:300") + load_organism_problems("organism:linmod:500") + load_organism_problems("organism:linmod-hard:300")}
    kinds = {d["kind"] for d in documents}
    assert {"linmod", "linmod_context", "narrow", "check", "fact_drill", "check_drill"} <= kinds
    for d in documents:
        if d["kind"] == "linmod":
            assert d["messages"][0]["content"] in pretrain_questions
        if "messages" in d:
            assert not any(q in d["messages"][0]["content"] for q in held_out)
            assert "x*x" not in d["messages"][0]["content"]
