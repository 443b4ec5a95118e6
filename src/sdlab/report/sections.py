"""The report's sections as data: each is a list of parts (a title, a note, the CSV its numbers
went to, a table, figures) or, when its inputs are absent, the sentence saying which input
would fill it. The page template (templates/report.html.j2) renders them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from sdlab.core.io import read_jsonl
from sdlab.experiments.results import aggregate
from sdlab.report.inputs import Inputs, SweepData, evaluations, mean_by_step, slug
from sdlab.report.tables import METHOD_COLUMNS, REMEDY_COLUMNS, band, fmt, fmt_ci, fmt_id_score, method_rows, method_summary, ood_set_header, ood_sets, remedies_table, score_columns, scored_sets

TRAINING_PANELS = {"score (reward)": "reward_mean", "response tokens": "response_tokens_mean", "epistemic markers per response": "markers_per_response", "loss": "loss"}
ACCURACY_AXIS = (0.0, 1.02)  # y range of accuracy plots: scores are fractions
STUDY_SFT = "The study (DeepSeek-R1-Distill-Qwen-7B, AIME24): base 54.79, SFT on D_ug 51.04, SFT on D_sg 20.21."
CsvSink = Callable[[str, list[dict[str, Any]]], str]  # (name, rows) -> relative path written


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]


@dataclass
class Image:
    uri: str  # a data: URI (the page holds its figures)
    alt: str


@dataclass
class Part:
    title: str | None = None
    note: str = ""
    data: str | None = None  # the CSV file beside the page that holds these numbers
    table: Table | None = None
    images: list[Image] = field(default_factory=list)
    missing: str | None = None  # said instead of the rest when this input has nothing yet


Filled = list[Part] | str  # the parts, or the sentence saying which input would fill the section


def training_section(inputs: Inputs, sweeps: list[SweepData], save: CsvSink) -> Filled:
    from sdlab.report.plots import line_panels

    parts = []
    for run in inputs.runs:
        rows = read_jsonl(run / "metrics.jsonl")
        summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
        warning = summary.get("early_warning_step", rows[-1].get("early_warning_step") if rows else None)
        if not rows:
            parts.append(Part(missing=f"{run}: no metrics.jsonl rows yet."))
            continue
        panels = {title: {run.name: [(r["step"], r.get(key)) for r in rows]} for title, key in TRAINING_PANELS.items()}
        csv = save(f"training_{slug(run)}", [{"step": r["step"], **{k: r.get(k) for k in (*TRAINING_PANELS.values(), "markers_per_1k_tokens", "early_warning_step")}} for r in rows])
        note = f"early-warning step {warning} (marker density fell below half its start)" if warning is not None else "no early warning (marker density never fell below half its start)"
        parts.append(Part(title=str(run), note=f"{note}.", data=csv, images=[Image(line_panels(panels, xlabel="step", markers={run.name: warning}), f"training dynamics of {run}")]))
    for sweep in sweeps:
        groups = sweep.groups()
        panels = {title: {label: mean_by_step([c["training"] for c in cells], key) for label, cells in groups.items()} for title, key in TRAINING_PANELS.items()}
        warnings = {label: min((c["row"]["early_warning_step"] for c in cells if c["row"]["early_warning_step"] is not None), default=None) for label, cells in groups.items()}
        csv = save(f"training_{slug(sweep.path)}", [{"group": label, "step": step, **{key: dict(panels[title][label]).get(step) for title, key in TRAINING_PANELS.items()}}
                                                   for label in groups for step, _ in panels["score (reward)"][label]])
        shown = ", ".join(f"{label}: {step}" for label, step in warnings.items() if step is not None) or "none"
        parts.append(Part(title=f"sweep {sweep.results['name']} ({sweep.where})", note=f"Mean over {', '.join(sweep.results['aggregate_over'])} per group; "
                          f"dashed lines: earliest early-warning step per group ({shown}).", data=csv,
                          images=[Image(line_panels(panels, xlabel="step", markers=warnings), f"training dynamics of sweep {sweep.results['name']}")]))
    return parts or "No training run or sweep among the inputs: give a `sdlab train` output_dir or a sweep directory."


def probe_section(inputs: Inputs, save: CsvSink) -> Filled:
    from sdlab.probe.tables import pm

    parts = []
    for probe in inputs.probes:
        summary = json.loads((probe / "probe.json").read_text())
        rows, records = [], []
        for name, entry in summary["contexts"].items():
            divergence = entry.get("divergence") or {}
            rows.append([name, pm(entry["score"]), pm(entry["response_tokens"], 1), pm(entry["markers_paper"]),
                         pm(entry["entropy_context"]) if "entropy_context" in entry else pm(entry["entropy"]) + " (H(y|x))",
                         pm(entry["gap"]) if "gap" in entry else "0", pm(entry["gap_per_token"], 3) if "gap" in entry else "0",
                         fmt(divergence.get("mean"), 4), fmt(divergence.get("ratio"), 2)])
            records.append({"context": name, **{f"{key}_{part}": (entry.get(key) or {}).get(part) for key in ("score", "response_tokens", "markers_paper", "markers_word", "gap", "gap_per_token") for part in ("mean", "se")},
                            "divergence_mean": divergence.get("mean"), "divergence_marker_ratio": divergence.get("ratio")})
        csv = save(f"probe_{slug(probe)}", records)
        problems = summary["problems"]
        parts.append(Part(title=str(probe), note=f"{problems['selected']} problems of {problems['tried']} tried "
                          f"(unguided solve count {problems['band'][0]} to {problems['band'][1]}); mean ± standard error over problems; "
                          f"nats, {summary['estimator']['divergence']}.", data=csv,
                          table=Table(["context", "score", "response tokens", "epistemic words", "H(y|x,c)", "information gap", "gap per token", "divergence per token", "marker / other"], rows)))
    return parts or "No probe among the inputs: give a `sdlab probe --out` directory (probe.json)."


def results_section(inputs: Inputs, sweeps: list[SweepData], save: CsvSink) -> Filled:
    from sdlab.report.plots import interval_bars

    parts = []
    summary = method_summary(sweeps)
    if summary:
        csv = save("methods", summary)
        parts.append(Part(title="By method, over every sweep", note="Mean over every finished run of the sweeps above with the same ID set (coverages, contexts, "
                          "teachers and seeds pooled, so not a matched comparison; the per-sweep tables below are).", data=csv, table=Table(METHOD_COLUMNS, method_rows(summary))))
    for sweep in sweeps:
        rows = sweep.results["aggregate"]
        csv = save(f"results_{slug(sweep.path)}", rows)
        labels, per_set = [sweep.label(r) for r in rows], ood_sets(rows)
        body = [[label, f"{r['finished']}/{r['n']}", fmt(r.get("id_dataset")), fmt_id_score(r), fmt_ci(r, "ood_avg@k"), *(fmt_ci(r, f"{name}/avg@k") for name in per_set),
                 fmt_ci(r, "id_pass@k"), fmt_ci(r, "id_tokens", 0), fmt_ci(r, "id_markers", 1)] for label, r in zip(labels, rows)]
        bands = {name: [band(r, key) for r in rows] for name, key in score_columns(rows)}
        shared = sweep.results.get("shared", {})
        matched = ", ".join(f"{k}={shared[k]}" for k in ("steps", "batch", "rollouts", "eval.k", "eval.limit") if k in shared)
        parts.append(Part(title=f"sweep {sweep.results['name']}", note=f"Final avg@k, mean [95% interval] over {', '.join(sweep.results['aggregate_over'])} "
                          "(a group of one seed: the run's ID interval over problems in parentheses); "
                          f"OOD = mean over the non-ID evaluation sets. Matched settings: {matched}.", data=csv,
                          table=Table(["group", "finished", "ID set", "ID avg@k", "OOD avg@k", *map(ood_set_header, per_set), "ID pass@k", "ID tokens", "ID markers"], body),
                          images=[Image(interval_bars(labels, bands, ylabel="avg@k", ylim=ACCURACY_AXIS), f"ID and OOD accuracy of sweep {sweep.results['name']}")]))
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
        parts.append(Part(title="Evaluations", note="avg@k with its 95% interval over problems; the first data set of each evaluation is taken as in-distribution.", data=csv,
                          table=Table(["model", "data set", "role", "avg@k", "pass@k", "response tokens", "markers", "problems", "k"], body),
                          images=[Image(interval_bars(datasets, bands, ylabel="avg@k", ylim=ACCURACY_AXIS), "avg@k per data set and model")]))
    return parts or "No evaluated sweep, run or `sdlab eval` directory among the inputs."


def coverage_section(sweeps: list[SweepData], save: CsvSink) -> Filled:
    from sdlab.report.plots import interval_lines

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
        parts.append(Part(title=f"sweep {sweep.results['name']}", note="Final avg@k vs distinct training problems (log scale), mean and 95% interval over seeds.", data=csv,
                          images=[Image(interval_lines(panels, xlabel="distinct training problems", ylabel="avg@k", log_x=True, ylim=ACCURACY_AXIS), "coverage plot")]))
    return parts or "No sweep with a `coverage` axis among the inputs: give e.g. the output of `sdlab sweep recipes/sweeps/coverage.yaml`."


def pass_at_k_section(inputs: Inputs, sweeps: list[SweepData], save: CsvSink) -> Filled:
    from sdlab.report.plots import line_panels

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
        return "No pass@k curves: give an evaluated sweep (final_eval), run or `sdlab eval` directory."
    csv = save("pass_at_k", [{"panel": panel, "label": label, "k": k, "pass@k": v} for panel, lines in curves.items() for label, curve in lines.items() for k, v in enumerate(curve, 1)])
    panels = {panel: {label: list(enumerate(curve, 1)) for label, curve in lines.items()} for panel, lines in curves.items()}
    return [Part(note="Unbiased pass@k for k = 1 .. k samples (mean over problems; sweeps: over seeds too).", data=csv,
                 images=[Image(line_panels(dict(list(panels.items())[i : i + 3]), xlabel="k", ylim=ACCURACY_AXIS), "pass@k curves") for i in range(0, len(panels), 3)])]


def sft_section(sweeps: list[SweepData], save: CsvSink) -> Filled:
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
        parts.append(Part(title=f"sweep {sweep.results['name']}", note=f"avg@k, mean [95% interval] over seeds. {STUDY_SFT}", data=csv,
                          table=Table(["model", "ID avg@k", "OOD avg@k"], [[r["model"], fmt_ci(r, "id_avg@k"), fmt_ci(r, "ood_avg@k")] for r in records])))
    return parts or "No SFT sweep among the inputs: give the output of `sdlab sweep recipes/sweeps/offpolicy.yaml`."


def remedies_section(sweeps: list[SweepData], save: CsvSink) -> Filled | None:
    """Each remedies sweep's remedies judged against the goal (`sdlab.report.remedies`); None
    when no sweep among the inputs has a `remedies` rule (the section is then left out)."""
    parts = []
    for sweep in (s for s in sweeps if s.results.get("remedies")):
        note, records, rows = remedies_table(sweep.results)
        parts.append(Part(title=f"sweep {sweep.results['name']}", note=note, data=save(f"remedies_{slug(sweep.path)}", records), table=Table(REMEDY_COLUMNS, rows)))
    return parts or None
