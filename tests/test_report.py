"""`sdlab report` on real outputs of the tiny model (a training run, a GRPO/SDPO coverage sweep
with final evaluation, an SFT sweep, an evaluation and a probe), checked as data and as the
page headless Chromium renders."""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sdlab import SdlabError
from sdlab.report.inputs import detect_inputs, slug
from sdlab.report.page import build_report
from tests.test_train import distinct_characters

CHROMIUM = Path("/usr/bin/chromium")
HEADINGS = ("Training dynamics", "Context-richness probe (Table 1) and information gap", "ID and OOD results",
            "Coverage: accuracy vs distinct training problems", "pass@k curves", "Off-policy SFT: base, D_ug, D_sg")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A demo directory holding one of each input kind, made by the real commands (about 30 s)."""
    from sdlab.config.checks import load_train_config
    from sdlab.config.schema import EvalConfig, ProbeConfig
    from sdlab.evaluation.evaluate import run_eval
    from sdlab.experiments.grid import load_sweep
    from sdlab.experiments.sweep import run_sweep
    from sdlab.probe.probe import run_probe
    from sdlab.training.run import run_training

    root = tmp_path_factory.mktemp("report")
    demo = root / "demo"
    problems = write_jsonl(root / "problems.jsonl", [{"id": f"p{i}", "question": f"What is {i} + {i}? Put the answer in \\boxed{{}}.", "answer": str(2 * i),
                                                     "solution": f"<think>\nWait, {i} + {i} = {2 * i}; check.\n</think>\n\n\\boxed{{{2 * i}}}"} for i in range(8)])
    ood = [write_jsonl(root / f"{name}.jsonl", [{"id": f"{name}{i}", "question": f"What is {i} * {factor}?", "answer": str(factor * i)} for i in range(4)]) for name, factor in (("ood", 3), ("ood2", 5))]
    tiny = {"model": str(tiny_model_dir), "steps": 2, "batch": 2, "rollouts": 2, "max_completion_length": 6, "save_steps": 2, "lr": 1e-2,
            "data": {"train": str(problems)}, "eval": {"every": 1, "sources": [str(problems), *map(str, ood)], "limit": 2, "k": 2, "max_new_tokens": 4}}
    recipe = root / "grpo.yaml"
    recipe.write_text(yaml.safe_dump({"method": "grpo", "output_dir": str(demo / "grpo_run"), **tiny}))
    run_training(load_train_config(recipe), reward_funcs=distinct_characters)

    final_eval = {"k": 4, "limit": 2, "max_new_tokens": 4}
    coverage = root / "coverage.yaml"
    coverage.write_text(yaml.safe_dump({"name": "coverage", "output_dir": str(demo / "coverage"), "base": tiny, "final_eval": final_eval,
                                        "grid": {"method": ["grpo", "sdpo"], "coverage": {"1x4": {"data.train": "organism:linmod:1x4"}, "4": {"data.train": "organism:linmod:4"}}, "seed": [0]}}, sort_keys=False))
    run_sweep(load_sweep(coverage, ["steps=1"]), reward_funcs=distinct_characters)  # periodic evaluation at steps 0 and 1

    traces = {mode: write_jsonl(root / f"{mode}.jsonl", [{"messages": [{"role": "user", "content": f"What is {i} + {i}?"}, {"role": "assistant", "content": f"{'wait, ' * (mode == 'd_ug')}\\boxed{{{2 * i}}}"}]} for i in range(4)])
              for mode in ("d_ug", "d_sg")}
    offpolicy = root / "offpolicy.yaml"
    offpolicy.write_text(yaml.safe_dump({"name": "offpolicy", "output_dir": str(demo / "offpolicy"), "base": {**tiny, "method": "sft", "sft": {"dataset": str(traces["d_ug"]), "max_length": 64}},
                                         "grid": {"sft_data": {name: {"sft.dataset": str(path)} for name, path in traces.items()}, "seed": [0, 1]}}, sort_keys=False))
    run_sweep(load_sweep(offpolicy))

    run_eval(EvalConfig(model=str(tiny_model_dir), data=[str(problems), str(ood[0])], k=4, out=str(demo / "eval_base"), max_new_tokens=4, batch_size=4, backend="transformers"))
    run_probe(ProbeConfig(model=str(tiny_model_dir), data=str(problems), out=str(demo / "probe"), n=2, band=(0, 2), limit_problems=2, max_new_tokens=6, backend="transformers", seed=0))
    return demo


@pytest.fixture(scope="module")
def report(demo_dir) -> Path:
    return build_report([demo_dir], demo_dir.parent / "out" / "report.html")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_inputs_are_recognised_by_their_files(demo_dir, tmp_path):
    inputs = detect_inputs([demo_dir])
    assert [p.name for p in inputs.runs] == ["grpo_run"] and [p.name for p in inputs.sweeps] == ["coverage", "offpolicy"]
    assert [p.name for p in inputs.evals] == ["eval_base"] and [p.name for p in inputs.probes] == ["probe"]
    with pytest.raises(SdlabError, match="no run .* found"):
        detect_inputs([tmp_path])


def test_numbers_are_written_beside_the_html(report, demo_dir):
    data = report.parent / "report_data"
    names = sorted(p.name for p in data.iterdir())
    assert "pass_at_k.csv" in names and any(n.startswith("coverage_") for n in names) and any(n.startswith("sft_") for n in names)
    assert any(n.startswith("probe_") for n in names) and any(n.startswith("training_") and "grpo_run" in n for n in names)
    evals = read_csv(data / "evaluations.csv")
    metrics = json.loads((demo_dir / "eval_base" / "metrics.json").read_text())
    base = [r for r in evals if r["source"] == "eval_base"]
    assert [(r["dataset"], r["role"]) for r in base] == [("problems", "ID"), ("ood", "OOD")]
    assert float(base[0]["pass@k"]) == pytest.approx(metrics["problems"]["pass@k"])
    assert {r["source"] for r in evals} == {"eval_base", "grpo_run"}  # the run's last periodic evaluation too
    coverage = read_csv(next(data.glob("coverage_*.csv")))
    assert sorted((r["series"], r["distinct_problems"]) for r in coverage) == [("method=grpo", "1.0"), ("method=grpo", "4.0"), ("method=sdpo", "1.0"), ("method=sdpo", "4.0")]
    assert {"id_avg@k_mean", "ood_avg@k_mean", "ood/avg@k_mean", "ood2/avg@k_mean"} <= set(coverage[0])  # each OOD set plotted, their mean kept
    results = read_csv(next(data.glob("results_*coverage*.csv")))
    page = report.read_text()
    assert "<th>ID tokens</th>" in page and "<th>OOD ood2</th>" in page
    assert f"<td>{float(results[0]['id_tokens_mean']):.0f}" in page  # the final evaluation's length, not the rollouts'
    sft = read_csv(next(data.glob("sft_*.csv")))
    assert [r["model"] for r in sft] == ["base (step-0 evaluation)", "SFT sft_data=d_ug", "SFT sft_data=d_sg"]
    curves = read_csv(data / "pass_at_k.csv")
    assert {r["k"] for r in curves if r["panel"] == "coverage: ID"} == {"1", "2", "3", "4"}
    assert {"coverage: OOD ood", "coverage: OOD ood2"} <= {r["panel"] for r in curves}  # each OOD set its own curve


def chromium_dump(url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    return subprocess.run([str(CHROMIUM), *flags, *extra, url], capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium missing: `make test` installs Debian's chromium when apt works (as root)")
def test_report_renders_in_headless_chromium(report, demo_dir, tmp_path):
    dom = chromium_dump(report.as_uri(), tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    headings = re.findall(r"<h2[^>]*>(.*?)</h2>", page)
    assert headings == ["Inputs", *[h.replace("&", "&amp;") for h in HEADINGS]]
    assert 'class="missing"' not in page  # every section had its input
    metrics = json.loads((demo_dir / "eval_base" / "metrics.json").read_text())
    assert f"<td>{metrics['ood']['pass@k']:.3f}</td>" in page  # a value from the inputs, as rendered
    probe = json.loads((demo_dir / "probe" / "probe.json").read_text())
    assert f"<td>{list(probe['contexts'])[1]}</td>" in page
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 7 and not re.search(r'(src|href)="(https?:|file:|//)', page)  # nothing outside the page
    for encoded in images:
        png = base64.b64decode(encoded, validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    shot = tmp_path / "shot.png"
    result = chromium_dump(report.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1200,2400")
    assert result.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_inputs_leave_a_note_per_section(demo_dir, tmp_path):
    out = build_report([demo_dir / "eval_base"], tmp_path / "report.html")
    page = out.read_text()
    for text in ("No training run or sweep among the inputs", "No probe among the inputs", "No sweep with a `coverage` axis", "No SFT sweep among the inputs"):
        assert text.replace("`", "`") in page
    assert page.count('class="missing"') == 4
    assert "Organism health" not in page  # a model without an organism build record is not judged
    absent = page[page.index('<h2 id="absent">'):]
    assert all(heading in absent for heading in ("Training dynamics", "Coverage", "Off-policy SFT")) and "ID and OOD results" not in absent


def test_an_evaluation_of_an_organism_draw_that_lacks_an_ability_says_so_first(demo_dir, tmp_path):
    import shutil

    model = tmp_path / "organism"
    model.mkdir()
    (model / "build.json").write_text(json.dumps({"missing_abilities": ["the copy of the equation after a bare answer: check_copies_right 0.00"]}))
    evaluation = shutil.copytree(demo_dir / "eval_base", tmp_path / "eval")
    config = yaml.safe_load((evaluation / "config.yaml").read_text())
    (evaluation / "config.yaml").write_text(yaml.safe_dump({**config, "model": str(model)}))
    page = build_report([evaluation], tmp_path / "report.html").read_text()
    notice = page.index("Organism health:")
    assert notice < page.index('<h2 id="inputs">') and "lacks the copy of the equation after a bare answer" in page


def test_cli_writes_the_report(demo_dir, tmp_path):
    out = tmp_path / "cli" / "r.html"
    result = subprocess.run([sys.executable, "-m", "sdlab.cli", "report", str(demo_dir / "probe"), "--out", str(out)],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "MPLBACKEND": "Agg"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Context-richness probe" in out.read_text() and (out.parent / "report_data").is_dir()
    missing = subprocess.run([sys.executable, "-m", "sdlab.cli", "report", str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "not a directory" in missing.stderr and "Traceback" not in missing.stderr


def test_markdown_summary_has_the_probe_table_and_every_sweep_group(demo_dir, tmp_path):
    markdown = tmp_path / "results.md"
    build_report([demo_dir], tmp_path / "report.html", markdown=markdown)
    text = markdown.read_text()
    assert "| context | score | response tokens |" in text and "| solution |" in text
    for group in ("method=grpo, coverage=1x4", "method=sdpo, coverage=4", "sft_data=d_ug", "sft_data=d_sg"):
        assert f"| {group} |" in text
    assert "Sweep `offpolicy`" in text and "| sft_data=d_ug | 2/2 |" in text  # two seeds, averaged
    header = next(line for line in text.splitlines() if line.startswith("| group | cells done |"))
    assert "| OOD avg@k | OOD ood | OOD ood2 | ID tokens |" in header  # each OOD set beside their mean
    row = next(line for line in text.splitlines() if line.startswith("| sft_data=d_ug |")).split(" | ")
    assert len(row) == len(header.split(" | ")) and re.fullmatch(r"[0-9.]+ \[[-0-9.]+, [-0-9.]+\]", row[header.split(" | ").index("OOD ood2")])
    one_seed = re.search(r"\| method=grpo, coverage=1x4 \| 1/1 \| ([^|]+) \|", text).group(1)
    two_seeds = re.search(r"\| sft_data=d_ug \| 2/2 \| ([^|]+) \|", text).group(1)
    assert re.fullmatch(r"[-0-9.]+ \([-0-9.]+, [-0-9.]+\)", one_seed), one_seed  # the run's interval over problems
    assert re.fullmatch(r"[-0-9.]+ \[[-0-9.]+, [-0-9.]+\]", two_seeds), two_seeds  # the interval over seeds
    matched_text = text.split("Sweep `coverage` at matched steps")[1]
    matched_header = next(line for line in matched_text.splitlines() if line.startswith("| group |")).split(" | ")
    matched = re.search(r"\| method=grpo, coverage=1x4 \| ([^\n]+) \|\n", matched_text).group(1).split(" | ")
    assert len(matched) >= 6 and all(re.fullmatch(r"[0-9.]+", v) for v in matched), matched  # ID and each OOD set at two or more steps
    assert "OOD ood2 step 0" in matched_header and len(matched) == len(matched_header) - 1  # per OOD set, not their mean


def test_seeds_run_in_separate_directories_pool_into_one_aggregate(demo_dir, tmp_path):
    """A seed added later in its own directory joins the same experiment's intervals; a sweep
    whose settings differ (here the learning rate) stays a table of its own."""
    from sdlab.experiments.grid import load_sweep
    from sdlab.experiments.sweep import run_sweep

    recipe = demo_dir.parent / "offpolicy.yaml"
    run_sweep(load_sweep(recipe, [f"output_dir={tmp_path / 'seed2'}", "grid.seed=[2]"]))
    run_sweep(load_sweep(recipe, [f"output_dir={tmp_path / 'other_lr'}", "grid.seed=[0]", "lr=0.002"]))
    markdown = tmp_path / "results.md"
    build_report([demo_dir / "offpolicy", tmp_path / "seed2", tmp_path / "other_lr"], tmp_path / "report.html", markdown=markdown)
    text = markdown.read_text()
    assert f"(`{demo_dir / 'offpolicy'}, {tmp_path / 'seed2'}`)" in text and "| sft_data=d_ug | 3/3 |" in text
    assert f"(`{tmp_path / 'other_lr'}`)" in text and "| sft_data=d_ug | 1/1 |" in text
    pooled = read_csv(tmp_path / "report_data" / f"results_{slug(demo_dir / 'offpolicy')}.csv")
    assert {row["n"] for row in pooled} == {"3"} and all(row["id_avg@k_ci_low"] for row in pooled)


@pytest.mark.parametrize("parts", [
    {"grpo": "grid.method=[grpo]", "sdpo": "grid.method=[sdpo]"},  # a list axis: the key is the axis
    {"1x4": 'grid.coverage={1x4: {data.train: "organism:linmod:1x4"}}', "4": 'grid.coverage={"4": {data.train: "organism:linmod:4"}}'},  # named levels
], ids=["by-method", "by-coverage-level"])
def test_a_sweep_run_one_axis_level_per_directory_pools_into_one_table(demo_dir, tmp_path, parts):
    """Each method (or coverage level) of the coverage grid in its own directory (two lanes side
    by side) is still one experiment: one table with every cell, not one table per directory."""
    from sdlab.experiments.grid import load_sweep
    from sdlab.experiments.sweep import run_sweep

    recipe = demo_dir.parent / "coverage.yaml"
    for name, override in parts.items():
        run_sweep(load_sweep(recipe, [f"output_dir={tmp_path / name}", override, "steps=1"]), reward_funcs=distinct_characters)
    markdown = tmp_path / "results.md"
    build_report([tmp_path / name for name in parts], tmp_path / "report.html", markdown=markdown)
    text = markdown.read_text()
    assert text.count("Sweep `coverage` (") == 1 and "(`" + ", ".join(str(tmp_path / name) for name in parts) + "`)" in text
    assert "| method=grpo, coverage=1x4 | 1/1 |" in text and "| method=sdpo, coverage=4 | 1/1 |" in text



def test_method_summary_pools_every_sweep_by_method_and_counts_a_repeated_run_once(demo_dir, tmp_path):
    """The coverage sweep's GRPO and SDPO cells and the off-policy SFT cells each become one row;
    the same sweep given twice (a run made twice) adds no runs."""
    from sdlab.report.inputs import load_sweep_data, pool_sweeps
    from sdlab.report.tables import method_summary

    once = method_summary(pool_sweeps([load_sweep_data(demo_dir / name) for name in ("coverage", "offpolicy")]))
    assert {(r["method"], r["runs"]) for r in once} == {("grpo", 2), ("sdpo", 2), ("sft", 4)}
    grpo_cells = [c["row"] for c in json.loads((demo_dir / "coverage" / "results.json").read_text())["cells"] if c["row"]["method"] == "grpo"]
    grpo = next(r for r in once if r["method"] == "grpo")
    assert grpo["id_avg@k"] == pytest.approx(sum(c["id_avg@k"] for c in grpo_cells) / 2)
    assert grpo["id_tokens_min"] == min(c["id_tokens"] for c in grpo_cells)
    copy = tmp_path / "coverage_copy"
    shutil.copytree(demo_dir / "coverage", copy)
    twice = method_summary([load_sweep_data(demo_dir / "coverage"), load_sweep_data(copy)])
    assert {(r["method"], r["runs"]) for r in twice} == {("grpo", 2), ("sdpo", 2)}
    markdown = tmp_path / "results.md"
    build_report([demo_dir], tmp_path / "report.html", markdown=markdown)
    assert "By method, over every sweep" in markdown.read_text() and "| sft |" in markdown.read_text()
    assert (tmp_path / "report_data" / "methods.csv").is_file()


def test_a_training_panel_without_data_is_left_out():
    """An SFT sweep logs a loss but no reward, length or markers; its figure has one panel, not
    three empty ones beside the loss."""
    import io

    from PIL import Image

    from sdlab.report.plots import line_panels

    def width(panels: dict) -> int:
        return Image.open(io.BytesIO(base64.b64decode(line_panels(panels, xlabel="step").split(",", 1)[1]))).width

    loss = {"loss": {"d_ug": [(1, 0.3), (2, 0.2)]}}
    empty = {"score (reward)": {"d_ug": [(1, None), (2, None)]}, "response tokens": {"d_ug": []}}
    assert width({**empty, **loss}) == width(loss) < width({"score (reward)": {"d_ug": [(1, 0.5)]}, **loss})


def test_a_remedies_sweep_gets_its_own_section_with_each_remedy_judged(demo_dir, tmp_path):
    """A real (tiny) remedies sweep: SDPO, GRPO and one remedy over two seeds; the section shows
    the remedy's goal margins as computed from the sweep's own result rows."""
    from sdlab.experiments.grid import load_sweep
    from sdlab.experiments.sweep import run_sweep

    coverage = yaml.safe_load((demo_dir.parent / "coverage.yaml").read_text())
    remedies = tmp_path / "remedies.yaml"
    remedies.write_text(yaml.safe_dump({
        "name": "remedies", "output_dir": str(tmp_path / "remedies"), "base": {**coverage["base"], "steps": 1}, "final_eval": coverage["final_eval"],
        "remedies": {"knobs": {"marker": ["marker-0"]}},
        "grid": {"remedy": {"grpo": {"method": "grpo"}, "sdpo": {"method": "sdpo"}, "marker-0": {"method": "sdpo", "sdpo.marker_weight": 0.0}}, "seed": [0, 1]},
    }, sort_keys=False))
    results = run_sweep(load_sweep(remedies), reward_funcs=distinct_characters)
    page = build_report([tmp_path / "remedies"], tmp_path / "report.html", markdown=tmp_path / "results.md").read_text()
    assert '<h2 id="remedies">Remedies: goal met or not</h2>' in page and "<td>marker-0</td><td>chosen</td>" in page
    [judged] = read_csv(tmp_path / "report_data" / f"remedies_{slug(tmp_path / 'remedies')}.csv")
    rows = {(r["remedy"], r["seed"]): r for r in results["rows"]}
    margins = [(r["base_id_tokens"] - rows["marker-0", seed]["id_tokens"]) - 0.8 * (r["base_id_tokens"] - rows["sdpo", seed]["id_tokens"])
               for seed in ("0", "1") for r in [rows["sdpo", seed]]]
    assert judged["seeds"] == "2" and float(judged["length_margin_mean"]) == pytest.approx(sum(margins) / 2)
    assert judged["met"] in ("True", "False") and f"<td>{'met' if judged['met'] == 'True' else 'not met'}" in page
    assert "| marker | marker-0 | chosen |" in (tmp_path / "results.md").read_text()  # the Markdown summary has the same table
    assert "Remedies" not in build_report([demo_dir / "coverage"], tmp_path / "other.html").read_text()  # no remedies sweep: no section
