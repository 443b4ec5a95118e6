"""Evaluation metrics against hand-computed values, and `sdlab eval` end to end on the tiny model."""

import json
import math
import sys

import pytest
import yaml
from typer.testing import CliRunner

from sdlab.cli import app, main
from sdlab.core.stats import avg_at_k, mean_and_ci95, pass_at_k, problem_mean, t_critical_95
from sdlab.evaluation.evaluate import dataset_name, summarize

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


def test_mean_and_ci95_within_clips_only_the_interval():
    unclipped = mean_and_ci95([0.9, 1.0, 1.0])
    assert unclipped[2] > 1  # the t-interval of three pass rates passes 1
    mean, low, high = mean_and_ci95([0.9, 1.0, 1.0], within=(0.0, 1.0))
    assert (mean, low, high) == (unclipped[0], unclipped[1], 1.0)


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


# ---------------------------------------------------------------- sdlab eval end to end


def _eval_args(model_dir, data_files, out, *extra):
    args = ["eval", "--model", str(model_dir), "--out", str(out), "--limit", "3", "--k", "2", "--max-new-tokens", "16", "--backend", "transformers", "--batch-size", "2"]
    for path in data_files:
        args += ["--data", str(path)]
    return args + list(extra)


def _lines(path):
    return path.read_text().splitlines()


def test_eval_writes_metrics_samples_and_run_header(tiny_model_dir, math_eval_dir, tmp_path):
    out = tmp_path / "run"
    data = [math_eval_dir / "aime24.parquet", math_eval_dir / "math500.parquet"]
    result = CliRunner().invoke(app, _eval_args(tiny_model_dir, data, out))
    assert result.exit_code == 0, result.output
    assert "aime24" in result.output and "pass@2" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"aime24", "math500"}
    for name, m in metrics.items():
        assert (m["n_problems"], m["k"], len(m["pass_curve"])) == (3, 2, 2)
        assert 0 <= m["avg@k"] <= m["pass@k"] <= 1
        assert 1 <= m["mean_response_tokens"] <= 16
        records = [json.loads(line) for line in _lines(out / f"samples_{name}.jsonl")]
        assert sorted((r["index"], r["sample"]) for r in records) == [(i, j) for i in range(3) for j in range(2)]
        assert {"problem_id", "text", "num_tokens", "answer", "correct", "markers_paper", "markers_word", "finished"} <= set(records[0])
        assert m["truncated_fraction"] == pytest.approx(sum(not r["finished"] for r in records) / 6)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert (config["k"], config["limit"], config["max_new_tokens"]) == (2, 3, 16)
    assert "torch" in json.loads((out / "versions.json").read_text())

    # an existing run is never overwritten silently
    again = CliRunner().invoke(app, _eval_args(tiny_model_dir, data, out))
    assert again.exit_code != 0 and "--force" in str(again.exception)


def test_eval_resume_redoes_only_unfinished_problems(tiny_model_dir, math_eval_dir, tmp_path):
    out = tmp_path / "run"
    data = [math_eval_dir / "aime24.parquet"]
    assert CliRunner().invoke(app, _eval_args(tiny_model_dir, data, out)).exit_code == 0
    samples = out / "samples_aime24.jsonl"
    complete = _lines(samples)
    # interrupted while writing problem 2: its second sample is half a line
    samples.write_text("\n".join(complete[:5]) + "\n" + complete[5][:20])
    result = CliRunner().invoke(app, _eval_args(tiny_model_dir, data, out, "--resume"))
    assert result.exit_code == 0, result.output
    resumed = _lines(samples)
    assert resumed[:4] == complete[:4]  # problems 0 and 1 kept as they were
    assert sorted((json.loads(line)["index"], json.loads(line)["sample"]) for line in resumed) == [(i, j) for i in range(3) for j in range(2)]
    assert json.loads((out / "metrics.json").read_text())["aime24"]["n_problems"] == 3

    changed = CliRunner().invoke(app, _eval_args(tiny_model_dir, data, out, "--resume", "--temperature", "1.0"))
    assert changed.exit_code != 0 and "temperature" in str(changed.exception)


def test_malformed_data_is_a_one_line_error_naming_file_row_and_field(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import pandas as pd

    bad = tmp_path / "bad.parquet"
    prompt = [{"role": "user", "content": "1+1?"}]
    pd.DataFrame({"prompt": [prompt, prompt], "reward_model": [{"ground_truth": "2"}, {"style": "rule"}]}).to_parquet(bad)
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["sdlab", *_eval_args(tiny_model_dir, [bad], out)])
    with pytest.raises(SystemExit) as exit_info:
        main()  # the console entry point, as `sdlab eval ...` runs it
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert "bad.parquet" in message and "row 1" in message and "ground_truth" in message
    assert not out.exists()  # nothing half-made to clean up before the fixed rerun


def test_missing_model_fails_before_the_run_directory_is_made(math_eval_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["sdlab", *_eval_args(tmp_path / "nowhere", [math_eval_dir / "aime24.parquet"], out)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "nowhere: model directory not found" in capsys.readouterr().err
    assert not out.exists()


def test_hub_model_with_an_unreachable_hub_fails_at_once_before_the_run_directory(problems_file, tmp_path, monkeypatch, capsys):
    import time

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["sdlab", "eval", "--model", "someone/no-such-model", "--data", str(problems_file), "--out", str(out)])
    start = time.monotonic()
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2 and time.monotonic() - start < 5  # the libraries' retries took about a minute
    message = capsys.readouterr().err.strip()
    assert "someone/no-such-model: not a local model directory, and the Hugging Face hub (http://127.0.0.1:9) cannot be reached" in message
    assert "Traceback" not in message and not out.exists()


def test_corrupt_weights_are_a_one_line_error_and_leave_no_run_directory(tiny_model_dir, problems_file, tmp_path, monkeypatch, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_text("not weights")
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["sdlab", "eval", "--model", str(broken), "--data", str(problems_file), "--out", str(out), "--k", "1"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert "broken: cannot load the model (SafetensorError" in message and "Traceback" not in message
    assert not out.exists()  # the corrected rerun is not refused for a half-made directory

