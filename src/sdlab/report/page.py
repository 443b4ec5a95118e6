"""`sdlab report`: one self-contained HTML page (figures inline as PNG, no external assets)
from run, sweep, probe and evaluation directories, with every number also as CSV.

    sdlab report runs/sweeps/coverage runs/probe --out runs/report.html

Inputs are recognised by the files they hold: a sweep (`sweep.yaml`), a training run
(`config.yaml` + `metrics.jsonl` or `summary.json`), a probe (`probe.json`), an evaluation
(`metrics.json`, from `sdlab eval`); any other directory is searched (three levels deep) for
those, so a demo directory holding several of them works as one input. Sections whose inputs
are absent say which input they need (the Remedies section, for an optional experiment, is
left out instead). Numbers go to `report_data/*.csv` beside the HTML.
Sweep directories that hold one experiment run in parts (a seed added later, in its own
directory) are pooled into one table, so its intervals are over all the seeds.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from sdlab.core.io import atomic_write_text
from sdlab.experiments.results import write_csv
from sdlab.providers import missing_abilities
from sdlab.report.inputs import Inputs, detect_inputs, load_sweep_data, pool_sweeps, starting_models
from sdlab.report.sections import Filled, Part, coverage_section, pass_at_k_section, probe_section, remedies_section, results_section, sft_section, training_section
from sdlab.report.tables import markdown_summary

logger = logging.getLogger(__name__)
TEMPLATE = "report.html.j2"


@dataclass
class Section:
    anchor: str
    heading: str
    parts: list[Part]
    missing: str | None  # why the section is not drawn: the input that would fill it


def section(anchor: str, heading: str, filled: Filled) -> Section:
    return Section(anchor, heading, [], filled) if isinstance(filled, str) else Section(anchor, heading, filled, None)


def health(inputs: Inputs) -> list[tuple[str, str]]:
    """(model, ability) for every model the inputs started from whose build judged it to lack an
    ability the experiments rely on (docs/organism.md): such results measure the draw's
    breakage, not the method, so the page says it above every section."""
    return [(str(model), ability) for model in starting_models(inputs) for ability in missing_abilities(model)]


def render_page(**context: Any) -> str:
    environment = Environment(loader=PackageLoader("sdlab.report", "templates"), autoescape=select_autoescape(default=True, default_for_string=True), undefined=StrictUndefined)
    return environment.get_template(TEMPLATE).render(**context)


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
    sections = [
        section("training", "Training dynamics", training_section(inputs, sweeps, save)),
        section("probe", "Context-richness probe (Table 1) and information gap", probe_section(inputs, save)),
        section("results", "ID and OOD results", results_section(inputs, sweeps, save)),
        section("coverage", "Coverage: accuracy vs distinct training problems", coverage_section(sweeps, save)),
        section("passk", "pass@k curves", pass_at_k_section(inputs, sweeps, save)),
        section("sft", "Off-policy SFT: base, D_ug, D_sg", sft_section(sweeps, save)),
    ]
    remedies = remedies_section(sweeps, save)
    if remedies is not None:  # an optional experiment: no "not in this report" line without it
        sections.append(section("remedies", "Remedies: goal met or not", remedies))
    # A section with nothing to show is not drawn empty: it moves to one closing list that
    # says which input would fill it, so every drawn section is filled from the inputs.
    page = render_page(
        stamp=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        health=health(inputs),
        inputs=[(kind[:-1], str(path)) for kind, path in inputs.all()],
        filled=[s for s in sections if s.missing is None],
        absent=[s for s in sections if s.missing is not None],
    )
    atomic_write_text(out, page)
    if markdown is not None:
        Path(markdown).write_text(markdown_summary(inputs, sweeps))
    return out
