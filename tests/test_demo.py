"""`sdlab demo` end to end on the `test`-size organism: every stage runs through the real
commands (organism build, probe, GRPO and SDPO training, evaluation, report), and a rerun
skips what is finished instead of redoing it."""

import json

import pytest

from sdlab import SdlabError
from sdlab.experiments.demo import Stage, assign_lanes, load_demo_config, run_demo

# Small enough for seconds per stage; every stage still runs its real code path.
TINY_DEMO = [
    "organism_size=test",
    "probe_overrides=[limit_problems=2, n=2, 'band=[0, 2]', max_new_tokens=24, solution_source=reference, 'contexts=[none, solution, solution_nothink]']",
    "shared_overrides=[steps=2, eval.every=1, eval.k=1, max_completion_length=16, batch=2, rollouts=2, save_steps=1, eval.max_new_tokens=16]",
    "final_eval.sources=[organism:linmod-eval:3, organism:sqmod:3]",
    "final_eval.k=2",
    "final_eval.max_new_tokens=16",
]


@pytest.fixture
def demo_config(tmp_path, monkeypatch):
    monkeypatch.setenv("SDLAB_HOME", str(tmp_path / "home"))
    return load_demo_config(None, [*TINY_DEMO, f"out={tmp_path / 'demo'}"])


def test_demo_runs_every_stage_and_writes_one_report(demo_config, tmp_path):
    stages = []
    report = run_demo(demo_config, say=stages.append)
    out = tmp_path / "demo"
    assert report == out / "report.html" and report.is_file()
    assert (out / "probe" / "probe.json").is_file()
    for arm in ("grpo", "sdpo"):
        summary = json.loads((out / "train" / arm / "summary.json").read_text())
        assert summary["steps"] == 2
        assert (out / "train" / arm / "model" / "model.safetensors").is_file()
    for model in ("base", "grpo", "sdpo"):
        metrics = json.loads((out / "eval" / model / "metrics.json").read_text())
        assert set(metrics) == {"organism_linmod-eval_3", "organism_sqmod_3"}
        assert all(m["k"] == 2 for m in metrics.values())
    page = report.read_text()
    for heading in ("Training dynamics", "Context-richness probe", "ID and OOD results", "pass@k"):
        assert heading in page
    assert "Organism health:" in page and "lacks the copy of the question&#39;s equation" in page  # the test-size draw's judgement, via the runs' records
    assert not any("skipped" in line for line in stages)
    assert any("warning: this organism lacks the copy of the question's equation" in line for line in stages)  # a test-size draw lacks it
    assert (out / "logs" / "lane-1.log").is_file() and (out / "logs" / "lane-2.log").is_file()  # two lanes ran
    lanes = (out / "logs" / "lane-1.log").read_text() + (out / "logs" / "lane-2.log").read_text()
    assert lanes.count("lacks the copy of the question's equation") == 2  # each training arm warns once

    rerun = []
    run_demo(demo_config, say=rerun.append)
    assert sum("skipped" in line for line in rerun) == 1 + 2 + 3  # probe, two arms, three evaluations


def test_demo_rejects_unknown_keys_before_any_work(tmp_path):
    with pytest.raises(SdlabError, match="arm"):
        load_demo_config(None, [f"out={tmp_path / 'x'}", "armz={}"])
    assert not (tmp_path / "x").exists()


def test_lanes_put_the_arms_apart_and_keep_each_arm_before_its_evaluation():
    def chain(*labels):
        return [Stage(label, print, {}) for label in labels]

    chains = [chain("train grpo", "evaluate grpo"), chain("train sdpo", "evaluate sdpo"), chain("probe"), chain("evaluate base")]
    lanes = [[stage.label for stage in lane] for lane in assign_lanes(chains, 2)]
    assert sorted(lanes) == [["train grpo", "evaluate grpo", "probe"], ["train sdpo", "evaluate sdpo", "evaluate base"]]
    assert [[s.label for s in lane] for lane in assign_lanes(chains, 1)] == [["train grpo", "evaluate grpo", "train sdpo", "evaluate sdpo", "probe", "evaluate base"]]


def test_the_old_eval_keys_are_refused_with_their_new_names():
    with pytest.raises(SdlabError, match=r"eval_k is now final_eval.k"):
        load_demo_config(None, ["eval_k=2"])
    with pytest.raises(SdlabError, match=r"final_eval.sources is empty"):
        load_demo_config(None, ["final_eval.sources=[]"])
