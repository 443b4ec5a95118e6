"""Evaluation metrics against hand-computed values, and `sdlab eval` end to end on the tiny model."""

import json
import math
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from sdlab.cli import app
from sdlab.evaluate import avg_at_k, dataset_name, mean_and_ci95, pass_at_k, problem_mean, summarize, t_critical_95


# ---------------------------------------------------------------- pass@k


def test_pass_at_k_hand_computed():
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # k=1 is the fraction correct
    assert pass_at_k(16, 3, 1) == pytest.approx(3 / 16)
    # n=10, c=1, k=4: 1 - C(9,4)/C(10,4) = 1 - 126/210
    assert pass_at_k(10, 1, 4) == pytest.approx(1 - 126 / 210)


def test_pass_at_k_edges():
    assert pass_at_k(16, 0, 16) == 0.0  # nothing correct
    assert pass_at_k(16, 0, 1) == 0.0
    assert pass_at_k(16, 16, 1) == 1.0  # everything correct
    assert pass_at_k(16, 1, 16) == 1.0  # k = n: any correct sample counts
    assert pass_at_k(8, 5, 4) == 1.0  # k > n - c: every k-subset holds a correct one
    assert pass_at_k(8, 4, 4) == pytest.approx(1 - 1 / 70)  # k = n - c: C(4,4)/C(8,4)


def test_pass_at_k_is_stable_for_large_n():
    # C(1000, 500) overflows floats; the product form does not.
    value = pass_at_k(1000, 1, 500)
    assert value == pytest.approx(0.5)
    assert math.isfinite(pass_at_k(100_000, 3, 50_000))


@pytest.mark.parametrize("n, c, k", [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_avg_at_k_and_problem_mean():
    assert avg_at_k([True, False, False, True]) == 0.5
    # per problem first: (10 + 20) / 2 and 100 -> 57.5, not the pooled 130 / 3
    assert problem_mean([[10, 20], [100]]) == pytest.approx(57.5)
    with pytest.raises(ValueError):
        avg_at_k([])


# ---------------------------------------------------------------- confidence interval


def test_t_critical_values_match_tables():
    for df, exact in [(1, 12.706), (5, 2.571), (10, 2.2281), (29, 2.0452), (120, 1.9799)]:
        assert t_critical_95(df) == pytest.approx(exact, abs=1e-3)


def test_mean_and_ci95_hand_computed():
    # values 0, 1, 0, 1: mean 0.5, sample sd 0.57735, se 0.288675, t(3) = 3.182
    mean, low, high = mean_and_ci95([0.0, 1.0, 0.0, 1.0])
    assert mean == 0.5
    assert high - mean == pytest.approx(3.182 * 0.288675, rel=1e-4)
    assert mean - low == pytest.approx(high - mean)


def test_mean_and_ci95_degenerate_inputs():
    assert mean_and_ci95([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    mean, low, high = mean_and_ci95([0.3])
    assert mean == 0.3 and math.isnan(low) and math.isnan(high)


def test_summarize_averages_per_problem_then_over_problems():
    def sample(correct, tokens, markers, finished=True):
        return {"correct": correct, "num_tokens": tokens, "finished": finished, "markers_paper": markers, "markers_word": markers // 2}

    problems = [
        [sample(True, 10, 4), sample(False, 30, 0, finished=False)],
        [sample(False, 100, 2), sample(False, 100, 2)],
    ]
    m = summarize(problems, k=2)
    assert m["avg@k"] == pytest.approx(0.25)
    assert m["pass@k"] == pytest.approx(0.5)
    assert m["pass_curve"] == pytest.approx([0.25, 0.5])
    assert m["mean_response_tokens"] == pytest.approx((20 + 100) / 2)
    assert m["mean_markers_paper"] == pytest.approx((2 + 2) / 2)
    assert m["mean_markers_word"] == pytest.approx((1 + 1) / 2)
    assert m["truncated_fraction"] == pytest.approx(0.25)
    assert (m["n_problems"], m["k"]) == (2, 2)
    low, high = m["avg@k_ci95"]
    assert low < 0.25 < high


def test_dataset_names():
    assert dataset_name("../shared/data/math/evaluation/aime24.parquet") == "aime24"
    assert dataset_name("organism:add:50") == "organism_add_50"
