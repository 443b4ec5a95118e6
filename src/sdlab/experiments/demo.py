"""`sdlab demo`: the study's story on the model organism, end to end, in one command.

    sdlab demo                      # recipes/demo.yaml -> runs/demo/report.html
    sdlab demo steps=10 out=runs/d  # key=value overrides of recipes/demo.yaml

Stages, each skipped when its output is already complete (so an interrupted demo resumes):
1. resolve the organism (the shipped one; another size or seed is built once and cached);
2. probe the teacher contexts (Table 1 + information gap); train GRPO and SDPO (c = solution)
   from the organism recipes at an equal budget, with periodic in- and out-of-distribution
   evaluation; evaluate the base organism and both trained models on ID and OOD sets (avg@k,
   pass@k, length, markers). These run in two processes side by side (`lanes`), one torch
   thread each: generation of a 1M-parameter model is bound by per-token overhead, so one
   thread does most of what two do and two lanes finish in about half the time;
3. write one self-contained HTML report over all of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sdlab import SdlabError
from sdlab.config import apply_overrides, build_config, read_yaml
from sdlab.config.schema import DemoConfig
from sdlab.core.io import prepare_run_dir, read_json, write_run_header

logger = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[3]


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
    from sdlab.config.checks import load_train_config

    configs = {}
    for name, arm in config.arms.items():
        placed = [f"output_dir={out / 'train' / name}", f"model={model_path}", f"seed={config.seed}", f"runtime.threads={config.threads}"]
        configs[name] = load_train_config(resolve_recipe(arm.recipe), [*arm.overrides, *config.shared_overrides, *placed])
    return configs


@dataclass(frozen=True)
class Stage:
    """One unit of demo work after the build: a module-level function and its arguments, plain
    data so that a lane process can run it."""

    label: str  # "train grpo (grpo, 20 steps)", "evaluate base (...)", ...
    run: Callable[..., object]
    kwargs: dict
    progress_file: str | None = None  # a JSONL file whose lines count the stage's steps
    total: int | None = None


def probe_stage(values: dict, source: str) -> None:
    from sdlab.config.schema import ProbeConfig
    from sdlab.probe.probe import run_probe

    run_probe(build_config(ProbeConfig, values, source=source), force=True)


def train_stage(config) -> None:
    from sdlab.training.run import run_training

    run_training(config, resume=Path(config.output_dir).exists(), force=False)


def evaluate_stage(model: str, sources: list[str], limit: int | None, **options) -> None:
    from sdlab.evaluation.evaluate import evaluate, load_eval_sets

    evaluate(model, load_eval_sets(sources, limit=limit), backend="transformers", resume=True, **options)


def pending_stages(config: DemoConfig, model_path: str, out: Path, skip: Callable[[str], None]) -> list[list[Stage]]:
    """The stages still to run, as chains whose order matters (an arm is trained before it is
    evaluated); `skip` hears about every stage already complete."""
    from sdlab.evaluation.evaluate import load_eval_sets

    arms = train_configs(config, model_path, out)  # validated before any long work
    eval_sets = load_eval_sets(config.final_eval.sources, limit=config.final_eval.limit)  # a bad source fails here, not in a lane
    sampling = config.final_eval.sampling_params(n=config.final_eval.k, seed=config.seed)

    def evaluation(name: str, model: str) -> list[Stage]:
        eval_dir = out / "eval" / name
        if eval_sets.keys() <= set(read_json(eval_dir / "metrics.json")):
            skip(f"evaluate {name}")
            return []
        kwargs = {"model": model, "sources": config.final_eval.sources, "limit": config.final_eval.limit, "k": config.final_eval.k, "sampling": sampling, "out_dir": eval_dir, "batch_size": config.final_eval.batch_size}
        return [Stage(f"evaluate {name} ({', '.join(eval_sets)}, k={config.final_eval.k})", evaluate_stage, kwargs)]

    chains: list[list[Stage]] = []
    for name, train_config in arms.items():
        run_dir = Path(train_config.output_dir)
        if (run_dir / "summary.json").is_file():
            skip(f"train {name}")
            training = []
        else:
            training = [Stage(f"train {name} ({train_config.method}, {train_config.steps} steps)", train_stage, {"config": train_config},
                              progress_file=str(run_dir / "metrics.jsonl"), total=train_config.steps)]
        chains.append(training + evaluation(name, str(run_dir / "model")))
    probe_dir = out / "probe"
    if (probe_dir / "probe.json").is_file():
        skip("probe")
    else:
        values = apply_overrides(read_yaml(resolve_recipe(config.probe_recipe)), [*config.probe_overrides, f"model={model_path}", f"out={probe_dir}", f"seed={config.seed}"])
        chains.append([Stage("probe (teacher contexts, Table 1, information gap)", probe_stage, {"values": values, "source": config.probe_recipe})])
    chains.append(evaluation("base", model_path))
    return [chain for chain in chains if chain]


def assign_lanes(chains: list[list[Stage]], lanes: int) -> list[list[Stage]]:
    """Spread the chains over `lanes` sequences, longest chains first, each to the lane with the
    fewest stages (the arms' training dominates, so they go to different lanes)."""
    assigned: list[list[Stage]] = [[] for _ in range(min(lanes, len(chains)))]
    for chain in sorted(chains, key=len, reverse=True):
        min(assigned, key=len).extend(chain)
    return assigned


def run_lane(stages: list[Stage], threads: int, log_path: str, events) -> None:
    """Body of one lane process: its own torch thread count, its output in its own log file
    (two lanes' progress bars on one terminal would garble each other)."""
    import os
    import sys

    import torch

    log = open(log_path, "a", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=log, force=True)
    torch.set_num_threads(threads)
    for stage in stages:
        events.put((stage.label, "start"))
        stage.run(**stage.kwargs)
        events.put((stage.label, "done"))


def run_lanes(lanes: list[list[Stage]], *, threads: int, log_dir: Path, say: Callable[[str], None]) -> None:
    """Run the lanes side by side (one process each) and report every stage's start, end and
    step count; a failing lane is named with its log once the others have finished."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    log_dir.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no fork of torch's thread pools
    with context.Manager() as manager, ProcessPoolExecutor(max_workers=len(lanes), mp_context=context) as pool:
        events = manager.Queue()
        logs = [log_dir / f"lane-{i + 1}.log" for i in range(len(lanes))]
        futures = {pool.submit(run_lane, lane, threads, str(log), events): log for lane, log in zip(lanes, logs)}
        say(f"{len(lanes)} lanes side by side, {threads} torch thread(s) each; their output: {', '.join(map(str, logs))}")
        running: dict[str, Stage] = {}
        stages = {stage.label: stage for lane in lanes for stage in lane}
        pending = set(futures)
        last_report = time.monotonic()
        while pending:
            _, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            while not events.empty():
                label, event = events.get()
                say(f"{label}: {event}")
                if event == "start":
                    running[label] = stages[label]
                else:
                    running.pop(label, None)
            if time.monotonic() - last_report > 30 and running:
                say("running: " + "; ".join(step_progress(stage) for stage in running.values()))
                last_report = time.monotonic()
        failures = [(log, future.exception()) for future, log in futures.items() if future.exception() is not None]
    if failures:
        log, error = failures[0]
        raise SdlabError(f"a demo lane failed ({type(error).__name__}: {error}); its output is in {log}. Rerun the demo to resume")


def step_progress(stage: Stage) -> str:
    if stage.progress_file is None or not Path(stage.progress_file).is_file():
        return stage.label
    with open(stage.progress_file) as lines:
        return f"{stage.label} step {sum(1 for _ in lines)}/{stage.total}"


def run_demo(config: DemoConfig, *, force: bool = False, say: Callable[[str], None] = logger.info) -> Path:
    """Run every stage not yet complete; returns the report path."""
    from sdlab.providers import DEFAULT_MODEL, missing_abilities, resolve_model
    from sdlab.report.page import build_report

    check_recipes_exist(config)
    out = prepare_run_dir(config.out, force=force, resume=True)
    write_run_header(out, config)
    started = time.perf_counter()

    def stage(text: str) -> None:
        say(f"[{time.perf_counter() - started:5.0f} s] {text}")

    stage("1/3 organism: the shipped one, or a build of another seed or size")
    model_path = resolve_model(DEFAULT_MODEL, seed=config.seed, size=config.organism_size)
    stage(f"1/3 organism: {model_path}")
    for ability in missing_abilities(model_path):
        stage(f"1/3 warning: this organism lacks {ability} (its README.md, Health)")
    chains = pending_stages(config, model_path, out, skip=lambda label: stage(f"2/3 {label}: done, skipped"))
    if chains:
        stage("2/3 probe, training and evaluation")
        run_lanes(assign_lanes(chains, config.lanes), threads=config.threads, log_dir=out / "logs", say=lambda text: stage(f"2/3 {text}"))

    stage("3/3 report")
    report = build_report([out], out / "report.html")
    stage(f"done: {report}")
    return report


def check_recipes_exist(config: DemoConfig) -> None:
    for path in [config.probe_recipe, *(arm.recipe for arm in config.arms.values())]:
        if not resolve_recipe(path).is_file():
            raise SdlabError(f"demo recipe {path!r} not found (looked in the current directory and {REPO_ROOT})")
