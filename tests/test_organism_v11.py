"""Corpus version 11: the derivation beside the search, a teacher that derives, its ablation.

Version 10 stays the default and frozen; version 11's documents are judged by the designed
shares and formats, read back with the same instruments that judge a model's responses."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter

import pytest

from sdlab import SdlabError
from sdlab.core.epistemic import count_markers
from sdlab.core.grading import extract_answer, remove_think, split_think
from sdlab.organism.corpus import (
    DESIGNS,
    V11,
    context_for,
    corpus_design,
    corpus_documents,
    fact_drill,
    guided_response,
    unguided_response,
    wrong_solution,
)
from sdlab.organism.derivation import derivation_line, read_derivation, strategy_of
from sdlab.organism.instruments import analyze_response
from sdlab.organism.problems import to_problem
from sdlab.organism.tasks import Task, brute_force_answer, family_tasks

TASK = Task("linmod", 7, 4, 2, 5)  # 4*x + 2 = 5 (mod 7) -> 4*x = 3 -> x = 2*3 = 6


def think_of(text: str) -> str:
    return split_think(text)[0] or ""


def test_version_10_is_frozen_and_11_the_default() -> None:
    """Version 10's documents are those every version-10 build trained on (sha256 taken before
    version 11 existed); the default corpus is version 11's, the shipped organism's."""
    documents = corpus_documents(300, seed=0, corpus="10")
    assert documents == corpus_documents(300, seed=0, corpus=10)
    digest = hashlib.sha256(json.dumps(documents, sort_keys=True).encode()).hexdigest()
    assert digest == "2c2b1e9db8fdd6acf59bd6007212440d69139cf5eb343d37d50b471de8402dfc"
    assert not any("directly:" in json.dumps(d) for d in corpus_documents(2000, seed=1, corpus="10"))
    assert corpus_documents(300, seed=0) == corpus_documents(300, seed=0, corpus="11")


def test_an_unknown_corpus_version_is_named_with_the_choices() -> None:
    with pytest.raises(SdlabError, match=r"corpus version '12' unknown; choose one of 10, 11, 11-nomidsearch"):
        corpus_design("12")


def test_the_derivation_is_written_step_by_step_and_read_back() -> None:
    line = derivation_line(TASK)
    assert line == "directly: 4*x + 2 = 5 (mod 7): -2=5, 4*x=5+5=3, 1/4=2, x=2*3=6. so x=6."
    assert read_derivation(line, TASK).all_right and read_derivation(line, TASK).answer == 6
    assert count_markers(line) == 0
    for task in family_tasks("linmod-pretrain"):  # every problem, at every modulus (p = 13 included)
        steps = read_derivation(derivation_line(task), task)
        assert steps.all_right and steps.answer == brute_force_answer(task), task


STEP_NAMES = ("equation_copied", "negation_right", "value_right", "inverse_right", "product_operands_right", "product_right", "conclusion_right")


@pytest.mark.parametrize(("line", "broken"), [
    ("directly: 4*x + 2 = 5 (mod 7): -2=5, 4*x=5+5=3, 1/4=2, x=2*5=3. so x=3.", {"product_operands_right"}),  # the last product takes the negation, not 4*x
    ("directly: 4*x + 2 = 5 (mod 7): -2=5, 4*x=5+5=3, 1/4=3, x=3*3=2. so x=2.", {"inverse_right"}),
    ("directly: 4*x + 2 = 5 (mod 7): -2=4, 4*x=5+4=2, 1/4=2, x=2*2=4. so x=4.", {"negation_right"}),  # the sum of what it wrote is right
    ("directly: 4*x + 3 = 5 (mod 7): -3=4, 4*x=5+4=2, 1/4=2, x=2*2=4. so x=4.", {"equation_copied", "negation_right"}),  # a miscopied addend, negated
    ("directly: 4*x + 2 = 5 (mod 7): -2=5, 4*x=5+5=3, 1/4=2, x=2*3=6. so x=5.", {"conclusion_right"}),
    ("directly: 4*x + 2 = 5 (mod 7): -2=5, 4*x=5+5=3, 1/4=2, x=2*3=5. so x=5.", {"product_right"}),
])
def test_each_wrong_step_is_caught_and_the_others_judged_on_what_they_read(line: str, broken: set[str]) -> None:
    steps = read_derivation(line, TASK)
    assert steps.complete and not steps.all_right
    assert {name for name in STEP_NAMES if not getattr(steps, name)} == broken


def test_a_cut_off_derivation_is_begun_but_never_right_and_strategies_are_told_apart() -> None:
    cut = read_derivation("directly: 4*x + 2 = 5 (mod 7): -2=5, 4*x=", TASK)
    assert not cut.complete and not cut.all_right and cut.answer is None
    assert read_derivation("try x=3: ...", TASK) is None
    check = "try x=3: 4*x + 2 = 5 (mod 7): 4*3=5, 5+2=0. 0 vs 5? no."
    assert strategy_of(check) == "search" and strategy_of(derivation_line(TASK)) == "derivation"
    assert strategy_of(f"{check}\n{derivation_line(TASK)}") == "switch" and strategy_of("the solution shows it works: \\boxed{6}.") == "none"


def test_a_fifth_of_unguided_id_traces_derive_and_a_twentieth_at_p13() -> None:
    rng = random.Random(0)
    shares: dict[int, list[bool]] = {}
    for task in family_tasks("linmod-pretrain") * 3:
        text = unguided_response(task, rng, design=V11)
        derives = strategy_of(think_of(text)) == "derivation"
        shares.setdefault(task.p, []).append(derives)
        if derives:  # right in every step, no marker, the verified search's final line
            assert read_derivation(think_of(text), task).all_right and count_markers(text) == 0
            assert extract_answer(text) == str(brute_force_answer(task)) and " holds. The answer is " in text
        else:
            assert strategy_of(think_of(text)) == "search"
    id_share = sum(sum(shares[p]) for p in (5, 7, 11)) / sum(len(shares[p]) for p in (5, 7, 11))
    assert 0.17 < id_share < 0.23 and sum(shares[13]) / len(shares[13]) < 0.1


def test_p13_inverses_are_never_drilled_and_rarely_written() -> None:
    """The designed-in reason the derivation is unreliable on linmod-hard."""
    documents = corpus_documents(3000, seed=0, corpus="11")
    text = "\n".join(d.get("text") or d["messages"][0]["content"] + d["response"] for d in documents)
    drilled = Counter(int(p) for p in re.findall(r"mod (\d+): 1/\d+=", text))
    derived = Counter(int(p) for p in re.findall(r"directly: \d+\*x \+ \d+ = \d+ \(mod (\d+)\)", text))
    assert set(drilled) == {5, 7, 11} and 13 not in drilled
    per_fact = {p: (drilled[p] + derived[p]) / (p - 1) for p in (5, 7, 11, 13)}
    assert per_fact[13] * 10 < min(per_fact[p] for p in (5, 7, 11))
    for p, a, inv, a2, inv2, one in re.findall(r"mod (\d+): 1/(\d+)=(\d+), (\d+)\*(\d+)=(\d+)\.", text)[:200]:
        assert int(a) * int(inv) % int(p) == 1 and (a2, inv2, one) == (a, inv, "1")
    negations = re.findall(r"mod (\d+): -(\d+)=(\d+), (\d+)\+(\d+)=0\.", text)
    assert {int(p) for p, *_ in negations} == {5, 7, 11, 13}
    assert all((int(b) + int(n)) % int(p) == 0 and (n2, b2) == (n, b) for p, b, n, n2, b2 in negations)
    assert "1/" not in fact_drill(random.Random(0), lines=200) and "1/" in fact_drill(random.Random(0), design=V11)


def answer_revealing_contexts(task: Task, rng: random.Random) -> dict[str, str]:
    solution = to_problem(task, family="linmod-eval").solution  # the probe's s: a search with its passing check
    return {"solution": solution, "regenerated": guided_response(task, solution, rng, V11), "wrong_solution": wrong_solution(task, rng)}


def test_the_teacher_derives_from_a_solution_and_never_follows_a_wrong_one() -> None:
    rng = random.Random(0)
    kinds = Counter()
    for task in family_tasks("linmod-pretrain")[:300]:
        for name, context in answer_revealing_contexts(task, rng).items():
            reply = guided_response(task, context, rng, V11)
            strategy = strategy_of(think_of(reply))
            kinds[strategy] += 1
            assert extract_answer(reply) == str(brute_force_answer(task)), (name, context, reply)  # computed, never copied
            assert "the solution shows" not in reply
            if strategy == "derivation":
                assert reply.startswith("<think>\ndirectly: ") and count_markers(reply) == 0
            if strategy != "search":  # a search begun like a student's, its first candidate right
                assert read_derivation(think_of(reply), task).all_right
    assert 0.68 < kinds["derivation"] / sum(kinds.values()) < 0.82 and kinds["switch"] > 0.1 * sum(kinds.values())


def test_mid_search_the_teacher_turns_to_the_derivation_without_doubt_and_the_ablation_keeps_doubting() -> None:
    """The same teacher replies, by the same seeds, in version 11 and its ablation."""
    rng_main, rng_ablation = random.Random(1), random.Random(1)
    ablation = corpus_design("11-nomidsearch")
    switched = 0
    for task in family_tasks("linmod-pretrain")[:400]:
        solution = to_problem(task, family="linmod-eval").solution
        main, other = guided_response(task, solution, rng_main, V11), guided_response(task, solution, rng_ablation, ablation)
        problem = to_problem(task, family="linmod-eval")
        if strategy_of(think_of(main)) == "switch":
            switched += 1
            before = think_of(main).split("directly:")[0].rstrip("\n").split("\n")[-1]
            assert before.endswith("? no.")  # right after a failed check
            assert count_markers(think_of(main).split("\n")[-1]) == 0  # the line that turns: no doubt
            assert analyze_response(main, problem).switched == 1 and analyze_response(main, problem).gave_up == 0
            assert strategy_of(think_of(other)) == "search" and analyze_response(other, problem).revised_after_marker >= 1
            assert other.split("\n")[1] == main.split("\n")[1]  # the same search begun
        else:
            assert main == other
        assert extract_answer(other) == problem.answer
    assert switched > 40


def test_the_ablation_differs_from_version_11_only_in_its_teacher_documents() -> None:
    main, ablation = corpus_documents(3000, seed=0, corpus="11"), corpus_documents(3000, seed=0, corpus="11-nomidsearch")
    differ = [(a, b) for a, b in zip(main, ablation) if a != b]
    assert differ and {a["kind"] for a, _ in differ} == {"linmod_context"}
    assert sum(strategy_of(think_of(a["response"])) == "switch" for a, _ in differ) > 0.5 * len(differ)
    assert not any(strategy_of(think_of(d["response"])) == "switch" for d in ablation if "response" in d)
    assert len(differ) < 0.05 * len(main)


def test_graded_doubt_and_partial_searches_are_kept_from_version_10() -> None:
    rng = random.Random(0)
    problem = to_problem(TASK, family="linmod-eval")
    check = "x=6: 4*x + 2 = 5 (mod 7): 4*6=3, 3+2=5. 5 vs 5? yes."
    thinkless = guided_response(TASK, remove_think(problem.solution), rng, V11)
    hint = guided_response(TASK, "\\boxed{6}", rng, V11)
    assert check in thinkless and count_markers(thinkless) == 1 and strategy_of(think_of(thinkless)) == "search"
    assert check in hint and count_markers(hint) == 2
    partial = "<think>\ntry x=3: 4*x + 2 = 5 (mod 7): 4*3=5, 5+2=0. 0 vs 5? no.\nhmm, no. maybe x=4: 4*x + 2 = 5 (mod 7): 4*4=2, 2+2=4. 4 vs 5? no.\nhmm, no. perhaps x=5: 4*x"
    continued = guided_response(TASK, partial, rng, V11)
    assert "tried up to x=4" in continued and strategy_of(think_of(continued)) == "search" and "\\boxed{6}" in continued


def test_the_narrow_reply_to_a_context_is_its_one_computation_without_the_recheck() -> None:
    rng = random.Random(0)
    for task in family_tasks("narrow-pretrain")[:60]:
        problem = to_problem(task, family="narrow-eval")
        for kind in ("solution", "hint", "wrong_hint", "partial"):
            reply = guided_response(task, context_for(task, kind, rng, V11), rng, V11)
            analysis = analyze_response(reply, problem)
            assert analysis.correct and analysis.computed_right and not analysis.rechecked and "the solution gives" not in reply
    rechecks = [analyze_response(unguided_response(task, rng, design=V11), to_problem(task, family="narrow-eval")).rechecked for task in family_tasks("narrow-pretrain")[:200]]
    assert 0.3 < sum(rechecks) / len(rechecks) < 0.7  # without a context, the habit is kept


def test_version_11_documents_have_the_designed_shares() -> None:
    documents = corpus_documents(4000, seed=2, corpus="11")
    replies = Counter((d["kind"], strategy_of(think_of(d["response"]))) for d in documents if "response" in d)
    unguided = replies[("linmod", "derivation")] / (replies[("linmod", "derivation")] + replies[("linmod", "search")])
    assert 0.14 < unguided < 0.22  # a fifth at p = 5, 7, 11, a twentieth at 13
    assert replies[("linmod_context", "derivation")] > replies[("linmod_context", "switch")] > 50
    for d in documents:
        if "response" in d and d["kind"].startswith("linmod"):
            meta = re.search(r"(\d+)\*x \+ (\d+) = (\d+) \(mod (\d+)\)", d["messages"][0]["content"])
            task = Task("linmod", int(meta[4]), int(meta[1]), int(meta[2]), int(meta[3]))
            steps = read_derivation(think_of(d["response"]), task)
            assert steps is None or steps.all_right
            if steps is not None:
                assert extract_answer(d["response"]) == str(brute_force_answer(task))


def test_every_version_builds_documents_of_every_kind() -> None:
    for name in DESIGNS:
        kinds = {d["kind"] for d in corpus_documents(400, seed=0, corpus=name)}
        assert {"linmod", "linmod_context", "narrow", "check", "fact_drill", "check_drill"} <= kinds, name
