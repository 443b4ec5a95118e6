"""Instruments on hand-written responses: search, revisions, give-ups and check accuracy."""

from __future__ import annotations

import pytest

from sdlab.organism.corpus import chain
from sdlab.organism.instruments import analyze_response, slot_prefixes, summarize
from sdlab.organism.problems import to_problem
from sdlab.organism.tasks import Task

PROBLEM = to_problem(Task("linmod", 7, 4, 9, 5), family="linmod-eval")  # x = 6
EQ = "4*x + 9 = 5 (mod 7)"
RIGHT = f"x=6: {EQ}: 4*6=3, 3+9=5. 5 vs 5? yes. it works."
FINAL = f"x=6: {EQ} holds. The answer is \\boxed{{6}}."


def test_recovery_after_a_marker() -> None:
    text = f"<think>\ntry x=3: {EQ}: 4*3=5, 5+9=0. 0 vs 5? no.\nwait, that fails. perhaps {RIGHT}\n</think>\n\n{FINAL}"
    a = analyze_response(text, PROBLEM)
    assert a.correct and a.first_candidate_right is False and a.recovered
    assert (a.candidates, a.checks, a.failed_checks, a.revised_after_marker, a.revised_without_marker, a.gave_up) == (2, 2, 1, 1, 0, 0)
    assert a.check_copies_right == a.check_lookups_right == a.check_comparisons_right == a.check_verdicts_right == 2 and a.markers == 2


def test_give_up_and_revision_without_marker() -> None:
    text = f"<think>\ntry x=0: {EQ}: 4*0=0, 0+9=2. 2 vs 5? no.\ntry x=1: {EQ}: 4*1=4, 4+9=6. 6 vs 5? no.\n</think>\n\nThe answer might be \\boxed{{2}}."
    a = analyze_response(text, PROBLEM)
    assert not a.correct and a.answered and not a.recovered
    assert (a.revised_after_marker, a.revised_without_marker, a.gave_up) == (0, 1, 1)


def test_wrong_lookups_comparisons_and_verdicts_are_counted_apart() -> None:
    # 4*6 is 3 mod 7, not 2: a wrong lookup and a wrong verdict (6 is the answer, judged failing);
    # then right lookups and "3 vs 5? yes": a wrong comparison, and a wrong verdict
    text = f"<think>\ntry x=6: {EQ}: 4*6=2, 2+9=4. 4 vs 5? no.\nhmm, no. maybe x=2: {EQ}: 4*2=1, 1+9=3. 3 vs 5? yes. it works.\n</think>\n\nThe answer is \\boxed{{2}}."
    a = analyze_response(text, PROBLEM)
    assert a.first_candidate_right is True and not a.correct
    assert (a.check_lookups_right, a.check_comparisons_right, a.check_verdicts_right) == (1, 1, 0)


def test_a_check_of_a_miscopied_equation_is_counted_as_such() -> None:
    # right lookups on a wrong equation (coefficient 3 for 4), then the right equation with the
    # wrong addend carried into the lookups
    text = f"<think>\ntry x=6: 3*x + 9 = 5 (mod 7): 3*6=4, 4+9=6. 6 vs 5? no.\nhmm, no. maybe x=2: {EQ}: 4*2=1, 1+8=2. 2 vs 5? no.\n</think>\n\nThe answer is \\boxed{{2}}."
    a = analyze_response(text, PROBLEM)
    assert a.checks == 2 and a.check_lookups_right == 2 and a.check_copies_right == 0
    assert analyze_response(f"<think>\ntry {RIGHT}\n</think>\n\n{FINAL}", PROBLEM).check_copies_right == 1
    square = to_problem(Task("sqmod", 7, 0, 3, 5), family="sqmod")  # the factor is the candidate itself
    assert analyze_response("<think>\ntry x=3: x*x + 3 = 5 (mod 7): 3*3=2, 2+3=5. 5 vs 5? yes. it works.\n</think>\n\n\\boxed{3}", square).check_copies_right == 1


def test_a_sampled_modulus_of_zero_is_a_wrong_check_not_a_crash() -> None:
    analysis = analyze_response("<think>\ntry x=3: 4*x + 9 = 5 (mod 0): 4*3=5, 5+9=0. 0 vs 5? no.\n</think>\n\n\\boxed{3}", PROBLEM)
    assert analysis.checks == 1 and analysis.check_lookups_right == 0 and analysis.check_copies_right == 0


def test_cut_off_and_malformed_responses() -> None:
    a = analyze_response(f"<think>\ntry x=3: {EQ}: 4*3=", PROBLEM)
    assert not a.answered and a.candidates == 1 and a.checks == 0
    assert analyze_response("no idea", PROBLEM).first_candidate_right is None
    assert analyze_response(f"<think>\nthe solution shows it works: \\boxed{{6}}.\n</think>\n\n{FINAL}", PROBLEM).candidates == 0  # the final line is no check


def test_summary_rates() -> None:
    good = f"<think>\ntry {RIGHT}\n</think>\n\n{FINAL}"
    bad = f"<think>\ntry x=0: {EQ}: 4*0=0, 0+9=2. 2 vs 5? no.\nwait, wrong. maybe {RIGHT}\n</think>\n\n{FINAL}"
    summary = summarize([analyze_response(t, PROBLEM) for t in (good, bad)], [10, 20])
    assert summary["accuracy"] == 1.0 and summary["first_candidate_right"] == 0.5 and summary["recovery"] == 1.0
    assert summary["tokens"] == 15 and summary["candidates"] == 1.5 and summary["failed_then_marker_revision"] == 1.0


def test_slot_prefixes_stop_just_before_each_copied_number() -> None:
    line = chain(Task("linmod", 7, 4, 9, 5), 3)  # x=3: 4*x + 9 = 5 (mod 7): 4*3=5, 5+9=0. 0 vs 5? no.
    prefixes = slot_prefixes(line)
    assert prefixes == {"a": "x=3: ", "b": "x=3: 4*x + ", "c": "x=3: 4*x + 9 = "}
    with pytest.raises(ValueError, match="not a check line"):
        slot_prefixes("the solution shows x=3 works.")


def test_mechanics_are_read_off_an_evaluation_directory(tmp_path) -> None:
    """`sdlab organism mechanics` on files laid out as `sdlab eval` writes them: a right first
    candidate, a recovery after a marker, and a miscopied check, for two real eval problems."""
    import json

    import yaml
    from typer.testing import CliRunner

    from sdlab.cli import app
    from sdlab.organism.measure import mechanics_of_evaluation
    from sdlab.organism.problems import load_organism_problems

    source = "organism:linmod-eval:2"
    problems = load_organism_problems(source)
    tasks = [Task(p.meta["kind"], p.meta["p"], p.meta["a"], p.meta["b"], p.meta["c"]) for p in problems]
    answers = [int(p.answer) for p in problems]
    wrong = [(x + 1) % t.p for x, t in zip(answers, tasks)]
    texts = [f"<think>\ntry {chain(tasks[0], answers[0])}\n</think>\n\n\\boxed{{{answers[0]}}}",
             f"<think>\ntry {chain(tasks[1], wrong[1])}\nwait, that fails. perhaps {chain(tasks[1], answers[1])}\n</think>\n\n\\boxed{{{answers[1]}}}",
             f"<think>\ntry x={wrong[1]}: 1*x + 0 = 0 (mod 2): 1*0=0, 0+0=0. 0 vs 0? yes.\n</think>\n\n\\boxed{{{wrong[1]}}}"]
    samples = [{"problem_id": problems[i].id, "text": text, "num_tokens": 10 * (j + 1)} for j, (i, text) in enumerate(zip((0, 1, 1), texts))]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"data": [source, "elsewhere.parquet"]}))
    (tmp_path / "samples_organism_linmod-eval_2.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))

    (row,) = mechanics_of_evaluation(tmp_path)  # the non-organism data set is skipped
    assert row["family"] == "linmod-eval" and row["n"] == 3 and row["tokens"] == 20
    assert row["accuracy"] == round(2 / 3, 3) and row["first_candidate_right"] == round(1 / 3, 3) and row["recovery"] == 0.5
    assert row["check_copies_right"] == 0.75 and row["candidates"] == round(4 / 3, 3)

    result = CliRunner().invoke(app, ["organism", "mechanics", str(tmp_path)])
    assert result.exit_code == 0 and "| linmod-eval | none | 0.667 | 1.0 |" in result.output
    assert "| family | context | accuracy | answered |" in result.output  # a response that never boxes an answer is told apart from a wrong one
    assert "| linmod-eval | none | 1.0 | 0.0 | 0.0 | 0.667 |" in result.output  # strategies: all three search, two right
    (tmp_path / "samples_organism_linmod-eval_2.jsonl").write_text(json.dumps({**samples[0], "problem_id": "linmod-p0-nowhere"}) + "\n")
    result = CliRunner().invoke(app, ["organism", "mechanics", str(tmp_path)])
    assert result.exit_code != 0 and "linmod-p0-nowhere" in str(result.output) + str(result.exception)


def writer_rows(*, copies_after_context: str) -> list[dict]:
    """Ability rows of the trace writer's own responses (every check right), with the equation
    in checks after a context replaced by `copies_after_context` ("right", or "target": the
    target swapped for another number, the failure seen in AVX2-only builds)."""
    import random

    from sdlab.organism.corpus import context_for, guided_response, unguided_response
    from sdlab.organism.measure import ability_row
    from sdlab.organism.problems import load_organism_problems
    from sdlab.organism.tasks import equation

    rng = random.Random(0)
    problems = load_organism_problems("organism:linmod-eval:8")
    rows = []
    for context in ("none", "solution", "solution_nothink", "hint"):
        texts = []
        for problem in problems:
            task = Task("linmod", problem.meta["p"], problem.meta["a"], problem.meta["b"], problem.meta["c"])
            text = unguided_response(task, rng) if context == "none" else guided_response(task, context_for(task, context, rng), rng)
            if context != "none" and copies_after_context == "target":
                text = text.replace(f"{equation(task)}:", f"{equation(task).replace(f'= {task.c} ', f'= {(task.c + 1) % task.p} ')}:")
            texts.append(text)
        rows.append(ability_row("linmod-eval", context, texts, problems, [len(text) for text in texts]))
    return rows


def test_a_draw_with_every_required_ability_lacks_none() -> None:
    from sdlab.organism.measure import missing_abilities

    assert missing_abilities(writer_rows(copies_after_context="right")) == []


def test_broken_copies_after_a_context_are_named_and_unmeasured_rows_are_not_judged() -> None:
    from sdlab.organism.measure import missing_abilities

    rows = writer_rows(copies_after_context="target")
    missing = missing_abilities(rows)
    assert [m.split(":")[0] for m in missing] == ["the copy of the equation after a think-less solution", "the copy of the equation after a bare answer"]
    assert "check_copies_right 0.00 on linmod-eval / hint" in missing[1]
    assert missing_abilities(rows[:1]) == []  # only the no-context row measured: nothing after a context judged
