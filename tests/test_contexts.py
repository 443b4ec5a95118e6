"""Teacher contexts: names, the template, and where the context goes in the chat."""

from __future__ import annotations

import pytest

from sdlab import SdlabError
from sdlab.core.contexts import DEFAULT_TEMPLATE, build_teacher_messages, context_text, parse_context_names, validate_template

SOLUTION = "<think>\nWait, 2 + 2 = 4.\n</think>\n\nThe answer is \\boxed{4}."


def test_parse_context_names_keeps_order_and_normalises_partial():
    specs = parse_context_names(" none, solution,partial:0.50 ,hint")
    assert [s.name for s in specs] == ["none", "solution", "partial:0.5", "hint"]
    assert specs[2].fraction == 0.5


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ("none,soluton", "unknown context 'soluton'; allowed: none, solution, solution_nothink, regenerated, partial:F"),
        ("partial:1.5", "must be in (0, 1]"),
        ("partial:half", "partial needs a fraction"),
        ("hint:3", "only partial takes an argument"),
        ("none,,solution", "comma-separated"),
        ("solution,solution", "solution listed twice"),
    ],
)
def test_parse_context_names_rejects_bad_names_clearly(names, message):
    with pytest.raises(SdlabError) as err:
        parse_context_names(names)
    assert message in str(err.value)


def test_context_texts_follow_their_definitions():
    spec = {s.name: s for s in parse_context_names("none,solution,solution_nothink,regenerated,partial:0.5,hint")}
    assert context_text(spec["none"], solution=SOLUTION) is None
    assert context_text(spec["solution"], solution=SOLUTION) == SOLUTION
    assert context_text(spec["solution_nothink"], solution=SOLUTION) == "The answer is \\boxed{4}."
    assert context_text(spec["regenerated"], solution=SOLUTION, regenerated="y~") == "y~"
    assert context_text(spec["partial:0.5"], solution=SOLUTION) == SOLUTION[: round(len(SOLUTION) / 2)]
    assert context_text(spec["hint"], solution=SOLUTION, answer="4") == "\\boxed{4}"
    with pytest.raises(SdlabError, match="regenerated needs"):
        context_text(spec["regenerated"], solution=SOLUTION)


def test_teacher_prompt_fills_the_last_user_message_and_keeps_the_rest():
    messages = (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "First {x} question"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "What is $\\frac{1}{2}$ + {y}?"},
    )
    teacher = build_teacher_messages(messages, "s {z}")
    assert teacher[:3] == list(messages[:3])
    assert teacher[3]["content"] == "What is $\\frac{1}{2}$ + {y}?\n\nCorrect solution: s {z}\n\nCorrectly solve the original question."
    assert messages[3]["content"] == "What is $\\frac{1}{2}$ + {y}?"  # the input is not modified
    assert build_teacher_messages(messages, None) == list(messages)
    custom = build_teacher_messages(messages, "s", template="{solution} | {question}")
    assert custom[3]["content"] == "s | What is $\\frac{1}{2}$ + {y}?"


def test_template_must_use_question_and_solution():
    assert validate_template(DEFAULT_TEMPLATE) == DEFAULT_TEMPLATE
    for bad in ("{question} only", "{question} {solution} {feedback}", "{question {solution}"):
        with pytest.raises(SdlabError, match="template"):
            validate_template(bad)
    with pytest.raises(SdlabError, match="no user message"):
        build_teacher_messages([{"role": "system", "content": "x"}], "s")


def test_an_overlong_context_loses_its_middle_never_the_question(tiny_model_dir):
    from transformers import AutoTokenizer

    from sdlab.core.contexts import CUT_MARK
    from sdlab.probe.probe import fit_teacher_prompt

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    solution = "<think>\n" + "Wait, let me check 12 + 7 = 19. " * 20 + "\n</think>\n\nThe answer is \\boxed{19}."
    messages = [{"role": "user", "content": "What is 12 + 7?"}]
    full_text, full_ids, cut = fit_teacher_prompt(tokenizer, messages, solution, template=DEFAULT_TEMPLATE, max_prompt_tokens=10_000, enable_thinking=None)
    assert not cut and solution in full_text
    text, ids, cut = fit_teacher_prompt(tokenizer, messages, solution, template=DEFAULT_TEMPLATE, max_prompt_tokens=len(full_ids) // 2, enable_thinking=None)
    assert cut and len(ids) <= len(full_ids) // 2
    assert "What is 12 + 7?\n\nCorrect solution: <think>\nWait" in text and CUT_MARK in text and "\\boxed{19}." in text
    with pytest.raises(SdlabError, match="no room for its context"):
        fit_teacher_prompt(tokenizer, messages, solution, template=DEFAULT_TEMPLATE, max_prompt_tokens=5, enable_thinking=None)
