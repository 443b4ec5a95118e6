"""`sdlab demo`: the study's story on the model organism, end to end, in one command.

    sdlab demo                      # recipes/demo.yaml -> runs/demo/report.html
    sdlab demo steps=10 out=runs/d  # key=value overrides of recipes/demo.yaml

Stages, each skipped when its output is already complete (so an interrupted demo resumes):
1. build (or reuse) the organism;
2. probe the teacher contexts (Table 1 + information gap);
3. train GRPO and SDPO (c = solution) from the organism recipes at an equal budget, with
   periodic in- and out-of-distribution evaluation;
4. evaluate the base organism and both trained models on ID and OOD sets (avg@k, pass@k,
   length, markers);
5. write one self-contained HTML report over all of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import Field, PositiveInt

from sdlab import SdlabError
from sdlab.config import StrictModel, apply_overrides, build_config, read_yaml
from sdlab.rundir import prepare_run_dir, read_json, write_run_header

logger = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[2]


class DemoTrainConfig(StrictModel):
    """One training arm: a recipe file and overrides shared with the other arm."""

    recipe: str
    overrides: list[str] = []


class DemoConfig(StrictModel):
    """What `sdlab demo` runs; `recipes/demo.yaml` mirrors it."""

    out: str = "runs/demo"
    organism_size: str = "tiny"
    seed: int = 0
    probe_recipe: str = "recipes/probe/organism.yaml"
    probe_overrides: list[str] = []
    arms: dict[str, DemoTrainConfig] = Field(min_length=1)
    shared_overrides: list[str] = Field(default_factory=list, description="applied to every arm: equal budget by construction")
    eval_sources: list[str] = Field(min_length=1, description="first = in distribution, the rest out of distribution")
    eval_k: PositiveInt = 8
    eval_max_new_tokens: PositiveInt = 320
    eval_limit: PositiveInt | None = None
    eval_batch_size: PositiveInt = Field(8, description="problems per generation call (x eval_k samples)")


def resolve_recipe(path: str) -> Path:
    """Recipes ship in the repository: resolve relative paths there when not found from the cwd."""
    candidate = Path(path)
    if candidate.is_file() or candidate.is_absolute():
        return candidate
    shipped = REPO_ROOT / path
    return shipped if shipped.is_file() else candidate


def load_demo_config(path: str | Path | None, overrides: list[str]) -> DemoConfig:
    recipe = resolve_recipe(str(path or "recipes/demo.yaml"))
    values = apply_overrides(read_yaml(recipe), overrides)
    return build_config(DemoConfig, values, source=str(recipe))


def train_configs(config: DemoConfig, model_path: str, out: Path) -> dict:
    """Each arm's TrainConfig: its recipe + the shared overrides + this demo's paths and seed."""
    from sdlab.train_config import load_train_config

    configs = {}
    for name, arm in config.arms.items():
        placed = [f"output_dir={out / 'train' / name}", f"model={model_path}", f"seed={config.seed}"]
        configs[name] = load_train_config(resolve_recipe(arm.recipe), [*arm.overrides, *config.shared_overrides, *placed])
    return configs


def run_demo(config: DemoConfig, *, force: bool = False, say: Callable[[str], None] = logger.info) -> Path:
    """Run every stage not yet complete; returns the report path."""
    from sdlab.evaluate import evaluate, load_eval_sets
    from sdlab.generation import SamplingParams
    from sdlab.organism.build import build_organism
    from sdlab.probe import ProbeConfig, run_probe
    from sdlab.report import build_report
    from sdlab.train import run_training

    check_recipes_exist(config)
    out = prepare_run_dir(config.out, force=force, resume=True)
    write_run_header(out, config)
    started = time.perf_counter()

    def stage(text: str) -> None:
        say(f"[{time.perf_counter() - started:5.0f} s] {text}")

    stage("1/5 organism: build or reuse")
    model_path = str(build_organism(seed=config.seed, size=config.organism_size))
    arms = train_configs(config, model_path, out)  # validated before any long work

    probe_dir = out / "probe"
    if (probe_dir / "probe.json").is_file():
        stage("2/5 probe: done, skipped")
    else:
        stage("2/5 probe: teacher contexts (Table 1) and information gap")
        values = apply_overrides(read_yaml(resolve_recipe(config.probe_recipe)), [*config.probe_overrides, f"model={model_path}", f"out={probe_dir}", f"seed={config.seed}"])
        run_probe(build_config(ProbeConfig, values, source=config.probe_recipe), force=True)

    for name, train_config in arms.items():
        run_dir = Path(train_config.output_dir)
        if (run_dir / "summary.json").is_file():
            stage(f"3/5 train {name}: done, skipped")
            continue
        stage(f"3/5 train {name}: {train_config.method}, {train_config.steps} steps")
        run_training(train_config, resume=run_dir.exists(), force=False)

    sampling = SamplingParams(max_new_tokens=config.eval_max_new_tokens, n=config.eval_k, seed=config.seed)
    eval_sets = load_eval_sets(config.eval_sources, limit=config.eval_limit)
    models = {"base": model_path, **{name: str(Path(c.output_dir) / "model") for name, c in arms.items()}}
    for name, path in models.items():
        eval_dir = out / "eval" / name
        if eval_sets.keys() <= set(read_json(eval_dir / "metrics.json")):
            stage(f"4/5 evaluate {name}: done, skipped")
            continue
        stage(f"4/5 evaluate {name}: {', '.join(eval_sets)} (k={config.eval_k})")
        evaluate(path, eval_sets, k=config.eval_k, sampling=sampling, out_dir=eval_dir, backend="transformers", batch_size=config.eval_batch_size, resume=True)

    stage("5/5 report")
    report = build_report([out], out / "report.html")
    stage(f"done: {report}")
    return report


def check_recipes_exist(config: DemoConfig) -> None:
    for path in [config.probe_recipe, *(arm.recipe for arm in config.arms.values())]:
        if not resolve_recipe(path).is_file():
            raise SdlabError(f"demo recipe {path!r} not found (looked in the current directory and {REPO_ROOT})")
