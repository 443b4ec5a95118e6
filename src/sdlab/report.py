"""`sdlab report`: one self-contained HTML page (figures inline as PNG, no external assets)
from run, sweep, probe and evaluation directories, with every number also as CSV.

    sdlab report runs/sweeps/coverage runs/probe --out runs/report.html

Inputs are recognised by the files they hold: a sweep (`sweep.yaml`), a training run
(`config.yaml` + `metrics.jsonl` or `summary.json`), a probe (`probe.json`), an evaluation
(`metrics.json`, from `sdlab eval`); any other directory is searched (three levels deep) for
those, so a demo directory holding several of them works as one input. Sections whose inputs
are absent say which input they need. Numbers go to `report_data/*.csv` beside the HTML.
Sweep directories that hold one experiment run in parts (a seed added later, in its own
directory) are pooled into one table, so its intervals are over all the seeds.
"""

from __future__ import annotations

import datetime
import html
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from sdlab import SdlabError
from sdlab.rundir import MODEL_FILE, read_json, read_jsonl
from sdlab.sweep_results import aggregate, write_csv

logger = logging.getLogger(__name__)

TRAINING_PANELS = {"score (reward)": "reward_mean", "response tokens": "response_tokens_mean", "epistemic markers per response": "markers_per_response", "loss": "loss"}
ACCURACY_AXIS = (0.0, 1.02)  # y range of accuracy plots: scores are fractions
STUDY_SFT = "The study (DeepSeek-R1-Distill-Qwen-7B, AIME24): base 54.79, SFT on D_ug 51.04, SFT on D_sg 20.21."


@dataclass
class Inputs:
    sweeps: list[Path] = field(default_factory=list)
    runs: list[Path] = field(default_factory=list)
    probes: list[Path] = field(default_factory=list)
    evals: list[Path] = field(default_factory=list)

    def all(self) -> list[tuple[str, Path]]:
        return [(kind, path) for kind in ("sweeps", "runs", "probes", "evals") for path in getattr(self, kind)]


def kind_of(path: Path) -> str | None:
    if (path / "sweep.yaml").is_file():
        return "sweeps"
    if (path / "probe.json").is_file():
        return "probes"
    if (path / "config.yaml").is_file() and ((path / "metrics.jsonl").is_file() or (path / "summary.json").is_file()):
        return "runs"
    if (path / "metrics.json").is_file():
        return "evals"
    return None


def detect_inputs(paths: list[str | Path], *, depth: int = 3) -> Inputs:
    """Classify each directory (searching sub-directories of unrecognised ones)."""
    inputs = Inputs()

    def visit(path: Path, level: int) -> None:
        kind = kind_of(path)
        if kind is not None:
            getattr(inputs, kind).append(path)
        elif level < depth:
            for child in sorted(p for p in path.iterdir() if p.is_dir()):
                visit(child, level + 1)

    for path in map(Path, paths):
        if not path.is_dir():
            raise SdlabError(f"{path}: not a directory; give run, sweep, probe or evaluation directories")
        visit(path, 0)
    if not inputs.all():
        raise SdlabError(f"{', '.join(map(str, paths))}: no run (metrics.jsonl), sweep (sweep.yaml), probe (probe.json) or evaluation (metrics.json) found")
    return inputs


# ---------------------------------------------------------------- formatting


def fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if abs(value) < 1000 else f"{value:,.0f}"
    return html.escape(str(value))


def fmt_ci(row: dict[str, Any], column: str, digits: int = 3) -> str:
    mean, low, high = row.get(f"{column}_mean"), row.get(f"{column}_ci_low"), row.get(f"{column}_ci_high")
    interval = f" [{fmt(low, digits)}, {fmt(high, digits)}]" if low is not None and high is not None else ""
    return fmt(mean, digits) + interval


def table(columns: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def image(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


MISSING = '<p class="missing">'


def missing(text: str) -> str:
    return f"{MISSING}{html.escape(text)}</p>"


def slug(path: Path) -> str:
    return "_".join(path.resolve().parts[-2:]).replace(" ", "-")


# ---------------------------------------------------------------- per-input data


@dataclass
class SweepData:
    paths: list[Path]  # one sweep directory, or several pooled (see `pool_sweeps`)
    results: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.paths[0]

    @property
    def where(self) -> str:
        return ", ".join(map(str, self.paths))

    @property
    def group_by(self) -> list[str]:
        return [a for a in self.results["axes"] if a not in self.results["aggregate_over"]]

    def label(self, levels: dict[str, Any], *, without: tuple[str, ...] = ()) -> str:
        parts = [f"{a}={levels[a]}" for a in self.group_by if a not in without]
        return ", ".join(parts) or self.results["name"]

    def groups(self) -> dict[str, list[dict[str, Any]]]:
        """Group label -> the cell records averaged into it."""
        out: dict[str, list[dict[str, Any]]] = {}
        for record in self.results["cells"]:
            out.setdefault(self.label(record["levels"]), []).append(record)
        return out


def load_sweep_data(path: Path) -> SweepData:
    from sdlab.sweep_results import collect_results

    return SweepData([path], collect_results(path))


def pool_sweeps(sweeps: list[SweepData]) -> list[SweepData]:
    """Merge the directories of one experiment (same sweep, seeds run apart) so that its
    means and intervals are over all their seeds; different experiments stay apart."""
    from sdlab.sweep_results import pool_results, pooling_key

    experiments: dict[str, list[SweepData]] = {}
    for sweep in sweeps:
        experiments.setdefault(pooling_key(sweep.results), []).append(sweep)
    return [parts[0] if len(parts) == 1 else SweepData([path for part in parts for path in part.paths], pool_results([part.results for part in parts]))
            for parts in experiments.values()]


def run_final_eval(run: Path) -> dict[str, dict[str, Any]]:
    """A run's final evaluation: `final_eval/metrics.json`, else its last periodic evaluation."""
    final = run / "final_eval" / "metrics.json"
    if final.is_file():
        return json.loads(final.read_text())
    rows = read_jsonl(run / "eval.jsonl")
    last = max((r["step"] for r in rows), default=None)
    return {r["dataset"]: r for r in rows if r["step"] == last}


def evaluations(inputs: Inputs) -> dict[str, dict[str, dict[str, Any]]]:
    """Label -> {dataset: metrics} for every `sdlab eval` directory and every run's final
    evaluation; labels are directory names, with the parent's name added where two clash."""
    found = [(p, json.loads((p / "metrics.json").read_text())) for p in inputs.evals] + [(p, run_final_eval(p)) for p in inputs.runs]
    names = [p.name for p, _ in found]
    return {(p.name if names.count(p.name) == 1 else f"{p.parent.name}/{p.name}"): metrics for p, metrics in found if metrics}


def mean_by_step(runs: list[list[dict[str, Any]]], key: str) -> list[tuple[float, float | None]]:
    steps: dict[int, list[float]] = {}
    for rows in runs:
        for row in rows:
            if row.get(key) is not None:
                steps.setdefault(row["step"], []).append(row[key])
    return [(step, fmean(values)) for step, values in sorted(steps.items())]


# ---------------------------------------------------------------- sections

Section = tuple[str, str, str]  # (anchor, heading, html)
CsvSink = Callable[[str, list[dict[str, Any]]], str]  # (name, rows) -> relative path written


def training_section(inputs: Inputs, sweeps: list[SweepData], save: CsvSink) -> str:
    from sdlab.plots import line_panels

    parts = []
    for run in inputs.runs:
        rows = read_jsonl(run / "metrics.jsonl")
        summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
        warning = summary.get("early_warning_step", rows[-1].get("early_warning_step") if rows else None)
        if not rows:
            parts.append(missing(f"{run}: no metrics.jsonl rows yet."))
            continue
        panels = {title: {run.name: [(r["step"], r.get(key)) for r in rows]} for title, key in TRAINING_PANELS.items()}
        csv = save(f"training_{slug(run)}", [{"step": r["step"], **{k: r.get(k) for k in (*TRAINING_PANELS.values(), "markers_per_1k_tokens", "early_warning_step")}} for r in rows])
        note = f"early-warning step {warning} (marker density fell below half its start)" if warning is not None else "no early warning (marker density never fell below half its start)"
        parts.append(f"<h3>{html.escape(str(run))}</h3><p>{note}. Data: <code>{csv}</code></p>" + image(line_panels(panels, xlabel="step", markers={run.name: warning}), f"training dynamics of {run}"))
    for sweep in sweeps:
        groups = sweep.groups()
        panels = {title: {label: mean_by_step([c["training"] for c in cells], key) for label, cells in groups.items()} for title, key in TRAINING_PANELS.items()}
        warnings = {label: min((c["row"]["early_warning_step"] for c in cells if c["row"]["early_warning_step"] is not None), default=None) for label, cells in groups.items()}
        csv = save(f"training_{slug(sweep.path)}", [{"group": label, "step": step, **{key: dict(panels[title][label]).get(step) for title, key in TRAINING_PANELS.items()}}
                                                   for label in groups for step, _ in panels["score (reward)"][label]])
        shown = ", ".join(f"{label}: {step}" for label, step in warnings.items() if step is not None) or "none"
        parts.append(f"<h3>sweep {html.escape(sweep.results['name'])} ({html.escape(sweep.where)})</h3><p>Mean over {', '.join(sweep.results['aggregate_over'])} per group; "
                     f"dashed lines: earliest early-warning step per group ({html.escape(shown)}). Data: <code>{csv}</code></p>"
                     + image(line_panels(panels, xlabel="step", markers=warnings), f"training dynamics of sweep {sweep.results['name']}"))
    return "".join(parts) or missing("No training run or sweep among the inputs: give a `sdlab train` output_dir or a sweep directory.")


def probe_section(inputs: Inputs, save: CsvSink) -> str:
    from sdlab.probe_report import pm

    parts = []
    for probe in inputs.probes:
        summary = json.loads((probe / "probe.json").read_text())
        rows, records = [], []
        for name, entry in summary["contexts"].items():
            divergence = entry.get("divergence") or {}
            rows.append([html.escape(name), pm(entry["score"]), pm(entry["response_tokens"], 1), pm(entry["markers_paper"]),
                         pm(entry["entropy_context"]) if "entropy_context" in entry else pm(entry["entropy"]) + " (H(y|x))",
                         pm(entry["gap"]) if "gap" in entry else "0", pm(entry["gap_per_token"], 3) if "gap" in entry else "0",
                         fmt(divergence.get("mean"), 4), fmt(divergence.get("ratio"), 2)])
            records.append({"context": name, **{f"{key}_{part}": (entry.get(key) or {}).get(part) for key in ("score", "response_tokens", "markers_paper", "markers_word", "gap", "gap_per_token") for part in ("mean", "se")},
                            "divergence_mean": divergence.get("mean"), "divergence_marker_ratio": divergence.get("ratio")})
        csv = save(f"probe_{slug(probe)}", records)
        problems = summary["problems"]
        parts.append(f"<h3>{html.escape(str(probe))}</h3><p>{problems['selected']} problems of {problems['tried']} tried "
                     f"(unguided solve count {problems['band'][0]} to {problems['band'][1]}); mean ± standard error over problems; "
                     f"nats, {html.escape(summary['estimator']['divergence'])}. Data: <code>{csv}</code></p>"
                     + table(["context", "score", "response tokens", "epistemic words", "H(y|x,c)", "information gap", "gap per token", "divergence per token", "marker / other"], rows))
    return "".join(parts) or missing("No probe among the inputs: give a `sdlab probe --out` directory (probe.json).")


def results_section(inputs: Inputs, sweeps: list[SweepData], save: CsvSink) -> str:
    from sdlab.plots import interval_bars

    parts = []
    summary = method_summary(sweeps)
    if summary:
        csv = save("methods", summary)
        parts.append("<h3>By method, over every sweep</h3><p>Mean over every finished run of the sweeps above with the same ID set (coverages, contexts, "
                     f"teachers and seeds pooled, so not a matched comparison; the per-sweep tables below are). Data: <code>{csv}</code></p>"
                     + table(METHOD_COLUMNS, [[html.escape(cell) for cell in row] for row in method_rows(summary)]))
    for sweep in sweeps:
        rows = sweep.results["aggregate"]
        csv = save(f"results_{slug(sweep.path)}", rows)
        labels, per_set = [sweep.label(r) for r in rows], ood_sets(rows)
        body = [[html.escape(label), f"{r['finished']}/{r['n']}", fmt(r.get("id_dataset")), fmt_id_score(r), fmt_ci(r, "ood_avg@k"), *(fmt_ci(r, f"{name}/avg@k") for name in per_set),
                 fmt_ci(r, "id_pass@k"), fmt_ci(r, "id_tokens", 0), fmt_ci(r, "id_markers", 1)] for label, r in zip(labels, rows)]
        bands = {name: [band(r, key) for r in rows] for name, key in score_columns(rows)}
        shared = sweep.results.get("shared", {})
        matched = ", ".join(f"{k}={shared[k]}" for k in ("steps", "batch", "rollouts", "eval.k", "eval.limit") if k in shared)
        parts.append(f"<h3>sweep {html.escape(sweep.results['name'])}</h3><p>Final avg@k, mean [95% interval] over {', '.join(sweep.results['aggregate_over'])} "
                     "(a group of one seed: the run's ID interval over problems in parentheses); "
                     f"OOD = mean over the non-ID evaluation sets. Matched settings: {html.escape(matched)}. Data: <code>{csv}</code></p>"
                     + table(["group", "finished", "ID set", "ID avg@k", "OOD avg@k", *map(ood_set_header, per_set), "ID pass@k", "ID tokens", "ID markers"], body)
                     + image(interval_bars(labels, bands, ylabel="avg@k", ylim=ACCURACY_AXIS), f"ID and OOD accuracy of sweep {sweep.results['name']}"))
    evaluated = evaluations(inputs)
    if evaluated:
        records = [{"source": label, "dataset": name, "role": "ID" if i == 0 else "OOD", **{k: m.get(k) for k in ("avg@k", "pass@k", "mean_response_tokens", "mean_markers_paper", "n_problems", "k")},
                    "ci_low": (m.get("avg@k_ci95") or [None, None])[0], "ci_high": (m.get("avg@k_ci95") or [None, None])[1]}
                   for label, metrics in evaluated.items() for i, (name, m) in enumerate(metrics.items())]
        csv = save("evaluations", records)
        body = [[fmt(r["source"]), fmt(r["dataset"]), r["role"], fmt(r["avg@k"]) + (f" [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]" if r["ci_low"] is not None else ""),
                 fmt(r["pass@k"]), fmt(r["mean_response_tokens"], 1), fmt(r["mean_markers_paper"], 2), fmt(r["n_problems"]), fmt(r["k"])] for r in records]
        datasets = list(dict.fromkeys(r["dataset"] for r in records))
        by_key = {(r["source"], r["dataset"]): (r["avg@k"], r["ci_low"], r["ci_high"]) for r in records}
        bands = {label: [by_key.get((label, d), (None, None, None)) for d in datasets] for label in evaluated}
        parts.append(f"<h3>Evaluations</h3><p>avg@k with its 95% interval over problems; the first data set of each evaluation is taken as in-distribution. Data: <code>{csv}</code></p>"
                     + table(["model", "data set", "role", "avg@k", "pass@k", "response tokens", "markers", "problems", "k"], body)
                     + image(interval_bars(datasets, bands, ylabel="avg@k", ylim=ACCURACY_AXIS), "avg@k per data set and model"))
    return "".join(parts) or missing("No evaluated sweep, run or `sdlab eval` directory among the inputs.")


def coverage_section(sweeps: list[SweepData], save: CsvSink) -> str:
    from sdlab.plots import interval_lines

    parts = []
    for sweep in (s for s in sweeps if "coverage" in s.group_by):
        columns = score_columns(sweep.results["aggregate"])
        kept = dict.fromkeys(["id_avg@k", "ood_avg@k", *(key for _, key in columns)])  # the CSV keeps the OOD mean beside each set
        records, panels = [], {name: {} for name, _ in columns}
        for row in sweep.results["aggregate"]:
            series, x = sweep.label(row, without=("coverage",)), row.get("distinct_train_problems_mean")
            for name, key in columns:
                if x is not None:
                    panels[name].setdefault(series, []).append((x, band(row, key)))
            records.append({"series": series, "coverage": row["coverage"], "distinct_problems": x, **{f"{key}_{p}": row.get(f"{key}_{p}") for key in kept for p in ("mean", "ci_low", "ci_high")}})
        csv = save(f"coverage_{slug(sweep.path)}", records)
        parts.append(f"<h3>sweep {html.escape(sweep.results['name'])}</h3><p>Final avg@k vs distinct training problems (log scale), mean and 95% interval over seeds. Data: <code>{csv}</code></p>"
                     + image(interval_lines(panels, xlabel="distinct training problems", ylabel="avg@k", log_x=True, ylim=ACCURACY_AXIS), "coverage plot"))
    return "".join(parts) or missing("No sweep with a `coverage` axis among the inputs: give e.g. the output of `sdlab sweep recipes/sweeps/coverage.yaml`.")


def pass_at_k_section(inputs: Inputs, sweeps: list[SweepData], save: CsvSink) -> str:
    from sdlab.plots import line_panels

    curves: dict[str, dict[str, list[float]]] = {}  # panel -> label -> curve
    for sweep in sweeps:
        for label, cells in sweep.groups().items():
            for header, which in scored_sets(sweep.results["aggregate"]):  # the tables' columns, one panel each
                per_cell = []
                for cell in cells:
                    ids = cell["row"]["id_dataset"]
                    chosen = [c for name, c in cell["pass_curves"].items() if name == which or (which == "ID" and name == ids) or (which == "OOD" and name != ids)]
                    if chosen:
                        per_cell.append([fmean(values) for values in zip(*chosen)])
                if per_cell:
                    curves.setdefault(f"{sweep.results['name']}: {header}", {})[label] = [fmean(v) for v in zip(*per_cell)]
    for label, metrics in evaluations(inputs).items():
        for name, m in metrics.items():
            if m.get("pass_curve"):
                curves.setdefault(name, {})[label] = m["pass_curve"]
    if not curves:
        return missing("No pass@k curves: give an evaluated sweep (final_eval), run or `sdlab eval` directory.")
    csv = save("pass_at_k", [{"panel": panel, "label": label, "k": k, "pass@k": v} for panel, lines in curves.items() for label, curve in lines.items() for k, v in enumerate(curve, 1)])
    panels = {panel: {label: list(enumerate(curve, 1)) for label, curve in lines.items()} for panel, lines in curves.items()}
    return f"<p>Unbiased pass@k for k = 1 .. k samples (mean over problems; sweeps: over seeds too). Data: <code>{csv}</code></p>" + "".join(
        image(line_panels(dict(list(panels.items())[i : i + 3]), xlabel="k", ylim=ACCURACY_AXIS), "pass@k curves") for i in range(0, len(panels), 3))


def sft_section(sweeps: list[SweepData], save: CsvSink) -> str:
    parts = []
    for sweep in sweeps:
        sft_rows = [r for r in sweep.results["aggregate"] if r.get("method") == "sft"]
        if not sft_rows:
            continue
        cells = [c["row"] for c in sweep.results["cells"] if c["row"].get("method") == "sft"]
        (base,) = aggregate(cells, group_by=[], over=[])  # the step-0 scores over every SFT cell, as the sweep aggregates its columns
        records = [{"model": "base (step-0 evaluation)", **{f"{role}_avg@k_{p}": base.get(f"base_{role}_avg@k_{p}") for role in ("id", "ood") for p in ("mean", "ci_low", "ci_high")}}]
        records += [{"model": "SFT " + sweep.label(r, without=("method",)), **{f"{role}_avg@k_{p}": r.get(f"{role}_avg@k_{p}") for role in ("id", "ood") for p in ("mean", "ci_low", "ci_high")}} for r in sft_rows]
        csv = save(f"sft_{slug(sweep.path)}", records)
        parts.append(f"<h3>sweep {html.escape(sweep.results['name'])}</h3><p>avg@k, mean [95% interval] over seeds. {html.escape(STUDY_SFT)} Data: <code>{csv}</code></p>"
                     + table(["model", "ID avg@k", "OOD avg@k"], [[html.escape(r["model"]), fmt_ci(r, "id_avg@k"), fmt_ci(r, "ood_avg@k")] for r in records]))
    return "".join(parts) or missing("No SFT sweep among the inputs: give the output of `sdlab sweep recipes/sweeps/offpolicy.yaml`.")


# ---------------------------------------------------------------- the page

STYLE = """body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
img{max-width:100%;display:block;margin:.5em 0}.missing{color:#a60;font-style:italic}code{background:#f5f5f5;padding:0 3px}
.health{border-left:4px solid #c30;padding:.2em 1em;background:#fff4f0}"""


def starting_models(inputs: Inputs) -> list[Path]:
    """The model directories the inputs started from: the organism build a run or sweep cell
    recorded (`model_build.json`), a probe's or evaluation's configured model."""
    import yaml

    records = [run / MODEL_FILE for run in inputs.runs] + [record for sweep in inputs.sweeps for record in sweep.rglob(MODEL_FILE)]
    models = {read_json(record).get("model") for record in records}
    for path in inputs.probes + inputs.evals:
        config = path / "config.yaml"
        if config.is_file():
            models.add((yaml.safe_load(config.read_text()) or {}).get("model"))
    return sorted(Path(model) for model in models if isinstance(model, str))


def health_notice(inputs: Inputs) -> str:
    """A warning above every section when an organism the inputs started from lacks an ability
    the experiments rely on (its build's judgement, docs/organism.md): such results measure the
    draw's breakage, not the method."""
    from sdlab.organism.build import recorded_missing_abilities

    items = [f"<li><code>{html.escape(str(model))}</code> lacks {html.escape(ability)}</li>" for model in starting_models(inputs) for ability in recorded_missing_abilities(model)]
    if not items:
        return ""
    return ('<div class="health"><p><b>Organism health:</b> these results start from an organism draw that lacks abilities the '
            "experiments rely on (its README.md, Health); results that use them read noise.</p><ul>" + "".join(items) + "</ul></div>")


def method_summary(sweeps: list[SweepData]) -> list[dict[str, Any]]:
    """Every finished cell of the given sweeps, grouped by method and ID set: the study's SDPO vs
    GRPO comparison over whatever coverages, contexts, teachers and seeds were run. It pools
    unmatched conditions, so it sits beside the matched per-sweep tables, never instead of them.
    A run made twice (same settings give the same numbers: the richness sweep's solution arm
    repeats the coverage sweep's 512 arm) counts once."""
    identity = ("method", "id_dataset", "seed", "train_data", "id_avg@k", "id_pass@k", "ood_avg@k", "id_tokens", "id_markers", "ood_tokens",
                "train_reward_mean", "train_response_tokens_mean", "train_markers_per_response")  # all equal: one run made twice
    groups: dict[tuple[Any, Any], dict[tuple, dict[str, Any]]] = {}
    for sweep in sweeps:
        for cell in sweep.results["cells"]:
            row = cell["row"]
            if row.get("status") == "done" and row.get("id_avg@k") is not None:
                groups.setdefault((row.get("method"), row.get("id_dataset")), {})[tuple(row.get(k) for k in identity)] = row
    summary = []
    for (method, dataset), unique in groups.items():
        rows = list(unique.values())

        def mean(key: str) -> float | None:
            values = [float(r[key]) for r in rows if r.get(key) is not None]
            return sum(values) / len(values) if values else None

        def spread(key: str) -> tuple[float, float]:
            values = [float(r[key]) for r in rows if r.get(key) is not None]
            return (min(values), max(values)) if values else (None, None)

        (tokens_low, tokens_high), (markers_low, markers_high) = spread("id_tokens"), spread("id_markers")
        summary.append({
            "method": method, "id_dataset": dataset, "runs": len(rows), "id_avg@k": mean("id_avg@k"), "id_pass@k": mean("id_pass@k"), "ood_avg@k": mean("ood_avg@k"),
            "id_tokens_min": tokens_low, "id_tokens_max": tokens_high, "id_markers_min": markers_low, "id_markers_max": markers_high,
            "early_warning_fired": sum(r.get("early_warning_step") is not None for r in rows),
            "base_id_avg@k": mean("base_id_avg@k"), "base_ood_avg@k": mean("base_ood_avg@k"),  # step 0's evaluation (its k may differ: no pass@k)
        })
    return sorted(summary, key=lambda r: (str(r["id_dataset"]), str(r["method"])))


def method_rows(summary: list[dict[str, Any]]) -> list[list[str]]:
    return [[fmt(r["method"]), fmt(r["id_dataset"]), str(r["runs"]), fmt(r["id_avg@k"]), fmt(r["id_pass@k"]), fmt(r["ood_avg@k"]),
             f"{fmt(r['id_tokens_min'], 0)}-{fmt(r['id_tokens_max'], 0)}", f"{fmt(r['id_markers_min'], 1)}-{fmt(r['id_markers_max'], 1)}",
             f"{r['early_warning_fired']}/{r['runs']}", f"{fmt(r['base_id_avg@k'])} / {fmt(r['base_ood_avg@k'])}"] for r in summary]


METHOD_COLUMNS = ["method", "ID set", "runs", "ID avg@k", "ID pass@k", "OOD avg@k", "ID tokens (range)", "ID markers (range)", "early warning fired", "base at step 0: ID / OOD avg@k"]


def fmt_id_score(row: dict[str, Any]) -> str:
    """ID avg@k with its interval over seeds, or, for a one-seed group, the run's interval over
    problems in parentheses (evaluation noise only: it says nothing of seed-to-seed spread)."""
    low, high = row.get("id_avg@k_problems_ci_low_mean"), row.get("id_avg@k_problems_ci_high_mean")
    if row.get("n") == 1 and row.get("id_avg@k_mean") is not None and low is not None and high is not None:
        return f"{fmt(row['id_avg@k_mean'])} ({fmt(low)}, {fmt(high)})"
    return fmt_ci(row, "id_avg@k")


def markdown_table(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def periodic_steps(rows: list[dict[str, Any]]) -> list[int]:
    """The periodic-evaluation steps that every finished group of a sweep has (the aggregate's
    step<N> columns; a group still running has only its first steps and is left out)."""
    found = [{int(m.group(1)) for key in row if (m := re.fullmatch(r"step(\d+)_id_avg@k_mean", key))} for row in rows if row.get("finished")]
    return sorted(set.intersection(*found)) if found else []


def matched_steps_table(rows: list[dict[str, Any]], steps: list[int], label: Callable[[dict[str, Any]], str]) -> str:
    """ID and OOD avg@k of every group at each periodic-evaluation step (mean over seeds): the
    comparison at matched steps, so that a final checkpoint cannot be a lucky one. The columns
    are the final tables' (`score_columns`): each OOD set its own when there are two or more."""
    columns = score_columns(rows)
    header = ["group"] + [f"{name} step {s}" for name, _ in columns for s in steps]
    body = [[label(r)] + [fmt(r.get(f"{at_step(key, s)}_mean")) for _, key in columns for s in steps] for r in rows]
    return markdown_table(header, body)


def at_step(column: str, step: int) -> str:
    """A score column at a periodic-evaluation step, as `collect_cell` names it:
    `id_avg@k` -> `step15_id_avg@k`, `SET/avg@k` -> `SET/step15_avg@k`."""
    name, slash, score = column.rpartition("/")
    return f"{name}/step{step}_{score}" if slash else f"step{step}_{column}"


def ood_sets(rows: list[dict[str, Any]]) -> list[str]:
    """A sweep's OOD data sets, when it has two or more: each gets its own avg@k column, since
    their mean can hide that one set measures transfer and another only how a model guesses
    (the organism's `sqmod`, and corpus version 8's f(f(x)) `linmod-hard`; docs/organism.md)."""
    id_sets = {r.get("id_dataset") for r in rows}
    names = [name for name in dict.fromkeys(k.removesuffix("/avg@k_mean") for r in rows for k in r if k.endswith("/avg@k_mean")) if name not in id_sets]
    return names if len(names) > 1 else []


def ood_set_header(name: str) -> str:
    return f"OOD {name.removeprefix('organism_')}"


def scored_sets(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(header, what is scored) of every accuracy the tables, plots and pass@k panels show:
    ("ID", "ID"), then each OOD set by name when there are two or more (see `ood_sets`), else
    ("OOD", "OOD"), the mean over the OOD sets."""
    per_set = ood_sets(rows)
    return [("ID", "ID"), *((ood_set_header(name), name) for name in per_set)] if per_set else [("ID", "ID"), ("OOD", "OOD")]


def score_columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(header, aggregate column) of `scored_sets`."""
    return [(header, {"ID": "id_avg@k", "OOD": "ood_avg@k"}.get(which, f"{which}/avg@k")) for header, which in scored_sets(rows)]


def band(row: dict[str, Any], column: str) -> tuple[Any, Any, Any]:
    """An aggregate column's mean and 95% interval, as the interval plots take it."""
    return tuple(row.get(f"{column}_{part}") for part in ("mean", "ci_low", "ci_high"))


def selection_markdown(results: dict[str, Any]) -> str:
    """The sweep's selection rule, every level's score and the level it chose, per group."""
    select = results["select"]
    levels = sorted({level for choice in results["selection"] for level in choice["scores"]})
    rows = [[", ".join(str(choice[key]) for key in select["per"]), *(fmt(choice["scores"].get(level)) for level in levels),
             "none" if choice[select["axis"]] is None else f"{choice[select['axis']]:g}"] for choice in results["selection"]]
    return (f"Sweep `{results['name']}`: {select['axis']} chosen per {', '.join(select['per'])} by the rule fixed before the runs: "
            f"highest `{select['metric']}` (mean over seeds), ties to the smaller {select['axis']}.\n\n"
            + markdown_table([", ".join(select["per"]), *(f"{select['axis']} {level:g}" for level in levels), "chosen"], rows))


def markdown_summary(inputs: Inputs, sweeps: list[SweepData]) -> str:
    """The numbers a README quotes, as Markdown: each probe's tables (as in its probe.md), each
    sweep's final ID/OOD accuracy, length and markers (mean [95% interval] over seeds), and the
    by-method summary over all sweeps."""
    from sdlab.probe_report import format_tables

    parts = [f"Probe `{probe}`: mean ± standard error over problems.\n\n" + format_tables(json.loads((probe / "probe.json").read_text())) for probe in inputs.probes]
    for sweep in sweeps:
        per_set = ood_sets(sweep.results["aggregate"])
        rows = [[sweep.label(r), f"{r['finished']}/{r['n']}", fmt_id_score(r), fmt_ci(r, "id_pass@k"), fmt_ci(r, "ood_avg@k"), *(fmt_ci(r, f"{name}/avg@k") for name in per_set),
                 fmt_ci(r, "id_tokens", 0), fmt_ci(r, "id_markers", 1), fmt_ci(r, "ood_tokens", 0), fmt(r.get("early_warning_step_mean"), 1)] for r in sweep.results["aggregate"]]
        base = sweep.results["aggregate"][0] if sweep.results["aggregate"] else {}
        parts.append(f"Sweep `{sweep.results['name']}` (`{sweep.where}`): final evaluation, mean [95% interval] over {', '.join(sweep.results['aggregate_over'])} "
                     f"(a group of one seed: the run's ID interval over problems in parentheses); "
                     f"base model at step 0 (the periodic evaluation, fewer samples): ID {fmt(base.get('base_id_avg@k_mean'))}, OOD {fmt(base.get('base_ood_avg@k_mean'))}.\n\n"
                     + markdown_table(["group", "cells done", "ID avg@k", "ID pass@k", "OOD avg@k", *map(ood_set_header, per_set), "ID tokens", "ID markers", "OOD tokens", "early-warning step"], rows))
        if sweep.results.get("selection"):
            parts.append(selection_markdown(sweep.results))
        steps = periodic_steps(sweep.results["aggregate"])
        if len(steps) > 1:
            parts.append(f"Sweep `{sweep.results['name']}` at matched steps: the periodic evaluation (its own k and problems, fewer samples than the final one), mean over seeds.\n\n"
                         + matched_steps_table(sweep.results["aggregate"], steps, sweep.label))
    summary = method_summary(sweeps)
    if summary:
        parts.append("By method, over every sweep above (every finished run with the same ID set; conditions pooled, so not a matched comparison):\n\n"
                     + markdown_table(METHOD_COLUMNS, method_rows(summary)))
    return "\n\n".join(parts) + "\n"


def build_report(paths: list[str | Path], out: str | Path, *, markdown: str | Path | None = None) -> Path:
    """Write `out` (HTML) and `report_data/*.csv` beside it; returns the HTML path."""
    inputs = detect_inputs(paths)
    out = Path(out)
    data_dir = out.parent / "report_data"
    data_dir.mkdir(parents=True, exist_ok=True)

    def save(name: str, rows: list[dict[str, Any]]) -> str:
        if rows:
            write_csv(data_dir / f"{name}.csv", rows)
        return f"report_data/{name}.csv"

    sweeps = pool_sweeps([load_sweep_data(path) for path in inputs.sweeps])
    sections: list[Section] = [
        ("training", "Training dynamics", training_section(inputs, sweeps, save)),
        ("probe", "Context-richness probe (Table 1) and information gap", probe_section(inputs, save)),
        ("results", "ID and OOD results", results_section(inputs, sweeps, save)),
        ("coverage", "Coverage: accuracy vs distinct training problems", coverage_section(sweeps, save)),
        ("passk", "pass@k curves", pass_at_k_section(inputs, sweeps, save)),
        ("sft", "Off-policy SFT: base, D_ug, D_sg", sft_section(sweeps, save)),
    ]
    # A section with nothing to show is not drawn empty: it moves to one closing list that
    # says which input would fill it, so every drawn section is filled from the inputs.
    filled = [section for section in sections if not section[2].startswith(MISSING)]
    absent = [section for section in sections if section[2].startswith(MISSING)]
    listed = "".join(f"<li>{kind[:-1]}: <code>{html.escape(str(path))}</code></li>" for kind, path in inputs.all())
    toc = "".join(f'<li><a href="#{anchor}">{html.escape(heading)}</a></li>' for anchor, heading, _ in filled)
    body = "".join(f'<h2 id="{anchor}">{html.escape(heading)}</h2>{content}' for anchor, heading, content in filled)
    if absent:
        toc += '<li><a href="#absent">Not in this report</a></li>'
        body += '<h2 id="absent">Not in this report</h2><ul>' + "".join(f"<li>{html.escape(heading)}: {content}</li>" for _, heading, content in absent) + "</ul>"
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>sdlab report</title><style>{STYLE}</style></head><body>'
            f"<h1>sdlab report</h1><p>Generated {stamp}.</p>{health_notice(inputs)}<h2 id=\"inputs\">Inputs</h2><ul>{listed}</ul><ul>{toc}</ul>{body}</body></html>")
    tmp = out.with_suffix(".tmp")
    tmp.write_text(page)
    tmp.replace(out)
    if markdown is not None:
        Path(markdown).write_text(markdown_summary(inputs, sweeps))
    return out
