"""Corpus version 11's instruments and gates on hand-made responses and the trace writer's own,
and a test-size version-11 build end to end."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sdlab.cli import app
from sdlab.core.contexts import context_text, parse_context_name
from sdlab.organism.corpus import V10, V11, CorpusDesign, derivation_response, guided_response, unguided_response, wrong_solution
from sdlab.organism.derivation import derivation_line
from sdlab.organism.gates import checklist, gates_met, v11_gates
from sdlab.organism.instruments import analyze_response, doubt_places, summarize, task_of
from sdlab.organism.measure import ability_row
from sdlab.organism.problems import load_organism_problems, to_problem
from sdlab.organism.tasks import Task

TASK = Task("linmod", 7, 4, 2, 5)  # x = 6
PROBLEM = to_problem(TASK, family="linmod-eval")
EQ = "4*x + 2 = 5 (mod 7)"
FINAL = f"x=6: {EQ} holds. The answer is \\boxed{{6}}."
FAILED = f"try x=3: {EQ}: 4*3=5, 5+2=0. 0 vs 5? no."


def test_a_derivation_counts_right_only_when_every_step_is() -> None:
    right = analyze_response(f"<think>\n{derivation_line(TASK)}\n</think>\n\n{FINAL}", PROBLEM)
    assert right.strategy == "derivation" and right.derivation_steps_right and right.correct and right.markers == 0 and right.candidates == 0
    # the right answer through a wrong inverse and a wrong product that cancel out: correct, not derived right
    lucky = analyze_response(f"<think>\ndirectly: {EQ}: -2=5, 4*x=5+5=3, 1/4=3, x=3*3=6. so x=6.\n</think>\n\n{FINAL}", PROBLEM)
    assert lucky.correct and lucky.derivation_steps_right is False
    summary = summarize([right, lucky])
    assert summary["share_derivation"] == 1.0 and summary["accuracy_derivation"] == 1.0
    assert summary["derivation_steps_right"] == 0.5 and summary["derived_right"] == 0.5


def test_a_search_that_turns_to_the_derivation_is_a_switch_not_a_give_up() -> None:
    switch = analyze_response(f"<think>\n{FAILED}\n{derivation_line(TASK)}\n</think>\n\n{FINAL}", PROBLEM)
    assert switch.strategy == "switch" and (switch.switched, switch.gave_up, switch.failed_checks) == (1, 0, 1) and switch.markers == 0
    gave_up = analyze_response(f"<think>\n{FAILED}\n</think>\n\nThe answer might be \\boxed{{2}}.", PROBLEM)
    assert (gave_up.switched, gave_up.gave_up) == (0, 1) and gave_up.strategy == "search"
    summary = summarize([switch, gave_up])
    assert summary["failed_then_derivation"] == 0.5 and summary["failed_then_give_up"] == 0.5
    assert summary["share_switch"] == summary["share_search"] == 0.5 and summary["accuracy_search"] == 0.0


def test_doubt_places_are_the_lines_after_failed_checks_that_open_with_a_marker() -> None:
    text = (f"<think>\n{FAILED}\nhmm, no. maybe x=4: {EQ}: 4*4=2, 2+2=4. 4 vs 5? no.\ntry x=5: {EQ}: 4*5=6, 6+2=1. 1 vs 5? no.\n"
            f"wait, that fails. perhaps x=6: {EQ}: 4*6=3, 3+2=5. 5 vs 5? yes. it works.\n</think>\n\n{FINAL}")
    places = doubt_places(text, PROBLEM)
    assert [text[i : i + 9] for i in places] == ["hmm, no. ", "wait, tha"]  # not the revision without a marker, nothing after the pass
    assert doubt_places(f"<think>\n{FAILED}\n{derivation_line(TASK)}\n</think>", PROBLEM) == []


def test_narrow_replies_are_read_for_their_computation_and_the_recheck() -> None:
    problem = to_problem(Task("narrow", 7, 4, 5, 3), family="narrow-eval")  # (4*5 + 3) mod 7 = 2
    line = "(4*5 + 3) mod 7: 4*5=6, 6+3=2."
    final = "(4*5 + 3) mod 7 = 2. The answer is \\boxed{2}."
    one = analyze_response(f"<think>\n{line}\n</think>\n\n{final}", problem)
    habit = analyze_response(f"<think>\n{line}\nwait, let me check again: 4*5=6, 6+3=2. yes.\n</think>\n\n{final}", problem)
    copy = analyze_response(f"<think>\nthe solution gives \\boxed{{2}}.\n</think>\n\n{final}", problem)
    wrong = analyze_response("<think>\n(4*5 + 3) mod 7: 4*5=6, 6+3=1.\n</think>\n\n\\boxed{1}", problem)
    assert (one.computed_right, one.rechecked) == (True, False) and habit.rechecked
    assert copy.correct and not copy.computed_right and not wrong.computed_right
    assert summarize([one, habit, copy])["rechecked"] == pytest.approx(1 / 3)


def writer_rows(design: CorpusDesign, *, n: int = 64, hard_inverse_wrong: bool = True) -> list[dict]:
    """Ability rows of the trace writer's own responses (what a perfect student of `design`
    would write), the asked-for derivation at p = 13 with a wrong inverse when
    `hard_inverse_wrong` (the designed failure), lengths in words."""
    rng = random.Random(0)
    rows = []

    def add(family: str, context: str, texts: list[str], problems: list) -> None:
        rows.append(ability_row(family, context, texts, problems, [len(t.split()) for t in texts]))

    for family in ("linmod-eval", "linmod-hard", "linmod-bare", "narrow-eval"):
        problems = load_organism_problems(f"organism:{family}:{n}")
        add(family, "none", [unguided_response(task_of(p) if p.meta["kind"] != "narrow" else Task("narrow", p.meta["p"], p.meta["a"], p.meta["b"], p.meta["c"]), rng, design=design) for p in problems], problems)
    problems = load_organism_problems(f"organism:linmod-eval:{n}")
    for context in ("solution", "solution_nothink", "partial:0.5", "hint"):
        spec = parse_context_name(context)
        add("linmod-eval", context, [guided_response(task_of(p), context_text(spec, solution=p.solution, answer=p.answer), rng, design) for p in problems], problems)
    solution_replies = [guided_response(task_of(p), p.solution, rng, design) for p in problems]
    add("linmod-eval", "regenerated", [guided_response(task_of(p), r, rng, design) for p, r in zip(problems, solution_replies)], problems)
    add("linmod-eval", "wrong_solution", [guided_response(task_of(p), wrong_solution(task_of(p), rng), rng, design) for p in problems], problems)
    add("linmod-eval", "derive", [derivation_response(task_of(p)) for p in problems], problems)
    hard = load_organism_problems(f"organism:linmod-hard:{n}")
    texts = [derivation_response(task_of(p)) for p in hard]
    if hard_inverse_wrong:  # 1/a taken as a mod 11's inverse: every product after it goes wrong
        texts = [derivation_response(Task("linmod", 11, p.meta["a"] % 11 or 1, p.meta["b"] % 11, p.meta["c"] % 11)).replace("(mod 11)", "(mod 13)") for p in hard]
    add("linmod-hard", "derive", texts, hard)
    narrow = load_organism_problems(f"organism:narrow-eval:{n}")
    narrow_tasks = [Task("narrow", p.meta["p"], p.meta["a"], p.meta["b"], p.meta["c"]) for p in narrow]
    add("narrow-eval", "solution", [guided_response(t, p.solution, rng, design) for t, p in zip(narrow_tasks, narrow)], narrow)
    return rows


def test_the_version_11_writer_meets_every_gate_and_version_10_fails_the_teacher_gates() -> None:
    low_doubt = {"ratio_written": 0.2, "places": 40}
    gates = v11_gates(writer_rows(V11), low_doubt)
    assert gates_met(gates), checklist(gates)
    failed = {g["gate"] for g in v11_gates(writer_rows(V10), {"ratio_written": 0.98, "places": 40}) if g["passed"] is False}
    assert {"two strategies: the derivation in a minority of ID responses", "the teacher derives from a full solution", "the teacher derives from a regenerated solution",
            "mid-search the teacher stops doubting", "a wrong solution is not followed", "narrow with a context: the one computation, no re-check"} <= failed
    assert not any(name.startswith("kept from version 10") for name in failed)  # the writer's search is version 10's


def test_gates_say_what_was_not_measured_and_what_a_reliable_p13_derivation_breaks() -> None:
    rows = writer_rows(V11, n=64, hard_inverse_wrong=False)
    gates = {g["gate"]: g for g in v11_gates(rows, None)}
    assert gates["mid-search the teacher stops doubting"]["passed"] is None  # no doubt probe
    assert gates["the derivation unreliable on linmod-hard (p = 13's inverses, rarely practised)"]["passed"] is False
    few = v11_gates([r for r in writer_rows(V11, n=16)], {"ratio_written": 0.2, "places": 4})
    assert next(g for g in few if g["gate"] == "the derivation right in distribution")["passed"] is None  # under 64 problems
    text = checklist(few)
    assert "- [?] the derivation right in distribution" in text and "- [x] a wrong solution is not followed: 1.000" in text


@pytest.fixture(scope="module")
def built_v11(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sdlab.organism.build import build_organism

    return build_organism(tmp_path_factory.mktemp("organism") / "v11", size="test", seed=0, corpus="11", show_progress=False)


def test_a_test_size_version_11_build_records_its_version_and_measures_its_strategies(built_v11: Path) -> None:
    stats = json.loads((built_v11 / "build.json").read_text())
    assert stats["corpus_version"] == 11
    assert [(r["family"], r["context"]) for r in stats["abilities"]] == [("linmod-eval", "none"), ("linmod-bare", "none"), ("linmod-eval", "derive")]
    assert all("share_derivation" in r for r in stats["abilities"]) and stats["abilities"][-1]["share_derivation"] == 1.0  # begun with the derivation
    card = (built_v11 / "README.md").read_text()
    assert "Corpus (version 11)" in card and "Corpus version 11 adds" in card and "| share_search | share_derivation |" in card


def test_the_default_directory_and_settings_keep_the_versions_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sdlab.organism.build import default_organism_dir, settings_hash, size_spec

    monkeypatch.setenv("SDLAB_HOME", str(tmp_path))
    assert default_organism_dir(seed=0) == tmp_path / "organism" / "tiny-seed0"  # the default version, 11
    assert default_organism_dir(seed=1, corpus="10") == tmp_path / "organism" / "tiny-seed1-v10"
    assert len({settings_hash("tiny", 0, corpus) for corpus in ("10", "11", "11-nomidsearch")}) == 3
    assert settings_hash("tiny", 0) == settings_hash("tiny", 0, 11)
    assert settings_hash("tiny", 0, 10) == "b66b5eaa922963b1"  # the version-10 Results organism's settings, unchanged
    assert size_spec("tiny", "11").steps == 2 * size_spec("tiny", "10").steps == 3800


def test_the_build_command_names_the_corpus_versions_on_a_wrong_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["organism", "build", "--size", "test", "--corpus", "12", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "choose one of 10, 11, 11-nomidsearch" in str(result.exception) + result.output
    assert not (tmp_path / "x").exists()


def test_the_doubt_probe_reads_student_and_teacher_at_the_same_places(built_v11: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sdlab.organism.measure import doubt_probe, opening_ids

    problems = load_organism_problems("organism:linmod-eval:4")
    rng = random.Random(3)
    texts = [unguided_response(task_of(p), rng, give_up=False) for p in problems]  # searches, most with failed checks
    places = sum(len(doubt_places(t, p)) for t, p in zip(texts, problems))
    result = doubt_probe(AutoModelForCausalLM.from_pretrained(built_v11), AutoTokenizer.from_pretrained(built_v11), texts, problems)
    assert result["places"] == places > 0
    assert all(0 < result[f"{role}_{what}"] < 1 for role in ("student", "teacher") for what in ("written", "doubt_mass", "derivation"))
    assert result["student_written"] <= result["student_doubt_mass"] and result["student_written"] != result["teacher_written"]
    splits = result["by_failed_check"]
    assert sum(split["places"] for split in splits.values()) == places  # every place in exactly one split
    for key in ("student_written", "teacher_doubt_mass", "teacher_derivation"):  # the splits average to the whole
        assert sum(split[key] * split["places"] for split in splits.values()) == pytest.approx(result[key] * places)
    assert splits["first"]["places"] == sum(min(1, len(doubt_places(t, p))) for t, p in zip(texts, problems))

    tokenizer = AutoTokenizer.from_pretrained(built_v11)
    doubt_ids, derive_id = opening_ids(tokenizer)
    for text, problem in zip(texts, problems):  # every doubt the writer writes opens with one of them
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        starts = {start: token for token, (start, _) in zip(encoded["input_ids"], encoded["offset_mapping"])}
        assert all(starts[place] in doubt_ids for place in doubt_places(text, problem))
    assert "directly:".startswith(tokenizer.decode([derive_id])) and derive_id not in doubt_ids


def test_the_measure_command_writes_every_instrument_and_the_gates(built_v11: Path, tmp_path: Path) -> None:
    out = tmp_path / "abilities.json"
    result = CliRunner().invoke(app, ["organism", "measure", str(built_v11), "--n", "2", "--threads", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    measured = json.loads(out.read_text())
    assert set(measured["doubt_probe"]["by_failed_check"]) == {"first", "second", "later"}
    assert {gate["gate"] for gate in measured["v11_gates"]} >= {"mid-search the teacher stops doubting"}
    assert "by which failed check" in result.output and "Corpus version 11's gates" in result.output
