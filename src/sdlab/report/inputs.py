"""What a report reads: input directories recognised by the files they hold (sweep, run, probe,
evaluation), sweeps pooled across the directories of one experiment, and every evaluation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from sdlab import SdlabError
from sdlab.core.io import MODEL_FILE, read_json, read_jsonl


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


def slug(path: Path) -> str:
    return "_".join(path.resolve().parts[-2:]).replace(" ", "-")


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
    from sdlab.experiments.results import collect_results

    return SweepData([path], collect_results(path))


def pool_sweeps(sweeps: list[SweepData]) -> list[SweepData]:
    """Merge the directories of one experiment (same sweep, seeds run apart) so that its
    means and intervals are over all their seeds; different experiments stay apart."""
    from sdlab.experiments.results import pool_results, pooling_key

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
