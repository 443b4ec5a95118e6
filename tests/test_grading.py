"""Answer extraction edge cases and math-verify grading with a hard deadline (real worker processes)."""

from __future__ import annotations

import threading
import time

import pytest

from sdlab.core.grading import extract_answer, grade, grade_many, remove_think, split_think

# ------------------------------------------------------------------ think blocks


def test_split_think_separates_thinking_from_answer():
    assert split_think("<think>\nlet me see</think>\nThe answer is 4.") == ("\nlet me see", "\nThe answer is 4.")
    # Chat templates often put "<think>" in the prompt, so the response starts inside the block.
    assert split_think("let me see</think>done") == ("let me see", "done")
    assert split_think("no thinking here") == (None, "no thinking here")
    assert split_think("<think>still going") == ("still going", "")


def test_remove_think_keeps_only_the_stripped_rest():
    assert remove_think("<think>hmm, wait</think>\n\nSo $x=2$.\n") == "So $x=2$."
    assert remove_think("  plain answer  ") == "plain answer"
    assert remove_think("<think>cut off mid-thought") == ""


# ------------------------------------------------------------------ extraction


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("so \\boxed{42}.", "42"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("nested \\boxed{\\sqrt{\\frac{a}{b^{2}}}} end", "\\sqrt{\\frac{a}{b^{2}}}"),
        ("first \\boxed{1} then \\boxed{2}", "2"),
        ("escaped braces \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("spaced \\boxed { 7 }", "7"),
        ("<think>\\boxed{1}</think> final \\boxed{3}", "3"),
        ("<think>maybe \\boxed{1}</think> I am not sure.", None),
        ("<think>\\boxed{5} is it", None),
        ("earlier \\boxed{1} then cut \\boxed{\\frac{1}{2}", None),
        ("empty \\boxed{}", None),
        ("no box, just 17", None),
        ("\\boxed 5 is not an answer", None),
        ("work...\nAnswer: 12\n", "12"),
        ("Answer: 1\nmore work\nAnswer: $\\frac{3}{4}$.", "\\frac{3}{4}"),
        ("work \\boxed{9}\nAnswer: 12", "9"),
    ],
)
def test_extract_answer(response, expected):
    assert extract_answer(response) == expected


# ------------------------------------------------------------------ equivalence


@pytest.mark.parametrize(
    ("answer", "truth", "expected"),
    [
        ("\\frac{1}{2}", "0.5", True),
        ("0.5", "\\frac{1}{2}", True),
        ("1/2", "\\frac{1}{2}", True),
        ("\\dfrac12", "\\frac{1}{2}", True),
        ("\\frac{1}{ 2 }", "1/2", True),
        ("\\frac{1}{3}", "0.5", False),
        ("-3", "-3", True),
        ("-3", "3", False),
        ("007", "7", True),
        ("41", "42", False),
        ("2.0", "2", True),
        ("\\text{5}", "5", True),
        ("27 \\text{ miles}", "27", True),
        ("3\\,000", "3000", True),
        ("10 \\sqrt 2", "10\\sqrt{2}", True),
        ("(3,\\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
        ("1+x^2", "x^2+1", True),
        ("\\text{(B)}", "\\text{(A)}", False),
    ],
)
def test_grade_equivalence(answer, truth, expected):
    assert grade(f"Thus \\boxed{{{answer}}}.", truth) is expected


def test_grade_without_answer_is_false():
    assert grade("<think>\\boxed{4}</think> I give up.", "4") is False
    assert grade("The answer is 4.", "4") is False


def test_grade_many_matches_grade_and_keeps_order():
    responses = ["\\boxed{1/2}", "\\boxed{0.25}", "no answer", "\\boxed{2x+2}", "\\boxed{1/2}", "Answer: 12"]
    truths = ["0.5", "\\frac{1}{3}", "3", "2(x+1)", "\\frac12", "12"]
    expected = [True, False, False, True, True, True]
    assert grade_many(responses, truths, workers=2) == expected
    assert [grade(r, t) for r, t in zip(responses, truths)] == expected
    with pytest.raises(ValueError, match="2 responses but 1 ground truths"):
        grade_many(["a", "b"], ["a"])


# ------------------------------------------------------------------ bounded worst case

PATHOLOGICAL = [
    "9^{9^{9^{9^9}}}",
    "1000000!",
    "+".join(f"x_{{{i}}}^{{{i}}}" for i in range(3000)),
]
TIMEOUT = 1.0
# Deadline plus the start of a replacement worker and process-kill latency, with slack for a busy CI machine.
SLACK_S = 4.0


def test_pathological_answers_return_false_within_the_timeout():
    grade("\\boxed{1/2}", "0.5")  # a ready worker, so start-up is not timed
    for answer in PATHOLOGICAL:
        start = time.monotonic()
        assert grade(f"\\boxed{{{answer}}}", "5", timeout=TIMEOUT) is False
        assert time.monotonic() - start < TIMEOUT + SLACK_S, answer
    # the killed workers were replaced: grading still works
    assert grade("\\boxed{\\frac{2}{4}}", "0.5") is True


def test_grade_many_mixes_stuck_and_normal_answers():
    responses = [f"\\boxed{{{PATHOLOGICAL[0]}}}", "\\boxed{\\frac{6}{4}}", f"\\boxed{{{PATHOLOGICAL[1]}}}", "\\boxed{x^2-1}"]
    truths = ["5", "1.5", "5", "(x-1)(x+1)"]
    start = time.monotonic()
    assert grade_many(responses, truths, timeout=TIMEOUT, workers=2) == [False, True, False, True]
    assert time.monotonic() - start < 2 * TIMEOUT + 2 * SLACK_S


def test_grading_from_a_non_main_thread_is_bounded():
    results: list[bool] = []
    start = time.monotonic()
    thread = threading.Thread(target=lambda: results.extend([grade(f"\\boxed{{{PATHOLOGICAL[0]}}}", "5", timeout=TIMEOUT), grade("\\boxed{0.5}", "1/2")]))
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert results == [False, True]
    assert time.monotonic() - start < TIMEOUT + 2 * SLACK_S


def test_concurrent_callers_share_the_pool():
    results: dict[int, list[bool]] = {}

    def work(k: int) -> None:
        results[k] = grade_many(["\\boxed{1/2}", "\\boxed{0.3}"], ["0.5", "0.5"], workers=2)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == {k: [True, False] for k in range(4)}
