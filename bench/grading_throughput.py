"""Grading throughput (responses/s) on realistic math answers, and the worst case on pathological ones.

    .venv/bin/python bench/grading_throughput.py            # about a minute on 2 cores

Responses are built from MATH-500's real ground truths (fractions, integers, intervals,
matrices, expressions) with a ~2,000-character think block, then a final answer that is the
ground truth verbatim, an equivalent rewrite (`\\dfrac`, `.0`, spacing), another problem's
answer (wrong), or missing (cut off). Identical strings and plain integers are settled in the
caller; everything else goes to math-verify workers.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import time
from pathlib import Path

from sdlab.core.data import load_problems
from sdlab.core.grading import grade, grade_many

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "math" / "evaluation" / "math500.parquet"
THINK = "<think>\n" + "Let me compute this carefully. Hmm, wait, maybe I should check the algebra again. " * 25 + "\n</think>\n\n"
PATHOLOGICAL = ["9^{9^{9^{9^9}}}", "1000000!", "+".join(f"x_{{{i}}}^{{{i}}}" for i in range(3000))]


def rewrite(answer: str) -> str:
    """An equivalent form a model might write instead of the reference string."""
    if re.fullmatch(r"-?\d+", answer):
        return answer + ".0"
    if "\\frac" in answer:
        return answer.replace("\\frac", "\\dfrac")
    return answer.replace(",", ", ") if "," in answer else " " + answer + " "


def build_responses(truths: list[str], *, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    responses = []
    for index, truth in enumerate(truths):
        kind = rng.random()
        if kind < 0.4:
            final = f"\\boxed{{{truth}}}"
        elif kind < 0.6:
            final = f"\\boxed{{{rewrite(truth)}}}"
        elif kind < 0.9:
            final = f"\\boxed{{{truths[(index + rng.randint(1, len(truths) - 1)) % len(truths)]}}}"
        else:
            responses.append(THINK[: len(THINK) // 2])  # cut off mid-thought
            continue
        responses.append(f"{THINK}So the final answer is {final}.")
    return responses, truths


def throughput(responses: list[str], truths: list[str], *, workers: int, timeout: float) -> tuple[float, list[bool]]:
    start = time.perf_counter()
    results = grade_many(responses, truths, timeout=timeout, workers=workers)
    return len(responses) / (time.perf_counter() - start), results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    truths = [problem.answer for problem in load_problems(args.data)]
    print(f"load average at start (other processes share the cores): {' '.join(f'{x:.1f}' for x in os.getloadavg())}")

    start = time.perf_counter()
    grade("\\boxed{1/2}", "0.5")
    print(f"cold start (first call, starts and warms the math-verify zygote): {time.perf_counter() - start:.2f} s")
    grade_many(["\\boxed{1/2}"] * 2, ["0.5", "0.25"], workers=2)  # both workers forked

    # A fresh mix per run (new seed), so a repeat does not just replay workers' parse caches.
    rates, correct = {}, []
    for workers in (1, 2):
        runs = []
        for repeat in range(args.repeats):
            responses, _ = build_responses(truths, seed=10 * workers + repeat)
            rate, results = throughput(responses, truths, workers=workers, timeout=args.timeout)
            runs.append(rate)
            correct.append(sum(results) / len(results))
        rates[workers] = statistics.median(runs)
    print(f"{len(truths)} MATH-500 responses per run, {statistics.mean(correct):.0%} graded correct (by construction about 60%)")
    print(f"throughput, 1 worker:  {rates[1]:.0f} responses/s (median of {args.repeats})")
    print(f"throughput, 2 workers: {rates[2]:.0f} responses/s; 2 workers / 1 worker = {rates[2] / rates[1]:.2f}x")

    # Rollout-like batch: 64 problems x 8 samples, answers repeat within a group.
    rng = random.Random(1)
    group_truths = [truth for truth in rng.sample(truths, 64) for _ in range(8)]
    group_responses, _ = build_responses(group_truths, seed=2)
    rate, _ = throughput(group_responses, group_truths, workers=2, timeout=args.timeout)
    print(f"rollout batch (64 prompts x 8 samples), 2 workers: {rate:.0f} responses/s")

    walls = []
    for answer in PATHOLOGICAL:
        start = time.perf_counter()
        assert grade(f"\\boxed{{{answer}}}", "5", timeout=args.timeout) is False
        walls.append(time.perf_counter() - start)
    print(f"pathological answers (timeout {args.timeout:g} s): wall per call " + ", ".join(f"{wall:.2f} s" for wall in walls) + f"; worst {max(walls):.2f} s = timeout + {max(walls) - args.timeout:.2f} s")

    responses, _ = build_responses(truths, seed=99)
    mixed_responses = [f"\\boxed{{{answer}}}" for answer in PATHOLOGICAL] + responses[:100]
    mixed_truths = ["5"] * len(PATHOLOGICAL) + truths[:100]
    start = time.perf_counter()
    grade_many(mixed_responses, mixed_truths, timeout=args.timeout, workers=2)
    wall = time.perf_counter() - start
    print(f"3 pathological + 100 normal responses, 2 workers: {wall:.2f} s (bound: ceil(3/2) x timeout = {2 * args.timeout:g} s plus normal work)")
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
