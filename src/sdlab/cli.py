"""The `sdlab` command line: one entry point, one subcommand per capability.

    sdlab --help
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from sdlab import SdlabError

app = typer.Typer(
    help="sdlab: probe, train (GRPO / self-distillation / SFT), sweep, evaluate and report on reasoning models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def main() -> None:
    """Console-script entry: user errors print one line (no traceback) and exit 2."""
    try:
        app()
    except SdlabError as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted: finished work is saved; rerun with --resume to continue")
        sys.exit(130)


@app.callback()
def _root() -> None:
    """sdlab: probe, train (GRPO / self-distillation / SFT), sweep, evaluate and report on reasoning models."""


@app.command()
def version() -> None:
    """Print sdlab's version and the versions of the libraries it drives."""
    from sdlab.rundir import library_versions

    for name, value in library_versions().items():
        print(f"{name}\t{value}")


@app.command()
def train(
    recipe: Path = typer.Argument(..., help="A training recipe (recipes/organism/*.yaml, recipes/models/*/*.yaml)."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. steps=10 sdpo.alpha=1.0 output_dir=runs/x"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in output_dir from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Delete an existing output_dir and start over."),
    show_teacher: int = typer.Option(None, "--show-teacher", help="Print the first N SDPO teacher inputs (audit)."),
) -> None:
    """Train with GRPO, SDPO or SFT; writes metrics, samples, checkpoints and summary.json to output_dir."""
    from sdlab.train import run_training
    from sdlab.train_config import load_train_config

    config = load_train_config(recipe, overrides or [])
    summary = run_training(config, resume=resume, force=force, show_teacher=show_teacher, on_teacher_audit=print if show_teacher else None)
    final = summary.get("final") or {}
    shown = {k: final[k] for k in ("reward_mean", "response_tokens_mean", "markers_per_response", "loss") if final.get(k) is not None}
    print(f"{config.output_dir}: {summary['steps']} steps in {summary['wall_time_s']:.0f} s; final {shown}")


@app.command()
def validate(
    recipe: Path = typer.Argument(..., help="A training recipe to check without running it."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides to check with it."),
) -> None:
    """Check a training recipe (schema, data files, model path) without running anything."""
    from sdlab.train_config import load_train_config

    config = load_train_config(recipe, overrides or [])
    shape = "" if config.method == "sft" else f", {config.batch} prompts x {config.rollouts} rollouts, {config.updates_per_step} update(s)/step"
    print(f"{recipe}: ok ({config.method}, model {config.model}, {config.steps} steps{shape}, output {config.output_dir})")


@app.command("sft-data")
def sft_data(
    model: str = typer.Option(..., "--model", help="Model dir, hub id or `organism`."),
    data: str = typer.Option(..., "--data", help="Problem source: parquet/JSONL path, datasets dir or an organism spec (organism:linmod:512)."),
    mode: str = typer.Option("unguided", "--mode", help="unguided (D_ug: no context) or guided (D_sg: solution in context, dropped for training)."),
    n_correct: int = typer.Option(800, "--n-correct", min=1, help="Correct traces to collect (one per problem)."),
    out: Path = typer.Option(..., "--out", help="Output chat JSONL; an existing file is resumed."),
    max_attempts: int = typer.Option(8, "--max-attempts", min=1, help="Samples per problem before giving up on it."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1),
    temperature: float = typer.Option(0.6, "--temperature", min=0.0),
    backend: str = typer.Option("auto", "--backend", help="auto, transformers or vllm."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Collect correct traces for off-policy SFT (the study's D_ug / D_sg)."""
    from sdlab.sft import MODES, collect_sft_data
    from sdlab.train import resolve_model

    if mode not in MODES:
        raise SdlabError(f"--mode {mode!r}: allowed values are {', '.join(MODES)}")
    count = collect_sft_data(
        model=resolve_model(model), data=data, mode=mode, n_correct=n_correct, out=out,
        max_attempts=max_attempts, max_new_tokens=max_new_tokens, temperature=temperature, backend=backend, seed=seed,
    )
    print(f"{out}: {count} correct {mode} traces")


@app.command("eval")
def eval_command(
    model: str = typer.Option(..., "--model", help="Model directory or hub id (loaded without remote code)."),
    data: list[str] = typer.Option(..., "--data", help="Problem file (verl parquet, JSONL) or data set spec; repeat for several."),
    k: int = typer.Option(16, "--k", min=1, help="Samples per problem: avg@k and pass@k."),
    out: Path = typer.Option(..., "--out", help="Run directory for config.yaml, metrics.json and samples_<dataset>.jsonl."),
    max_new_tokens: int = typer.Option(1024, "--max-new-tokens", min=1, help="Longest reply; longer ones are cut and count as truncated."),
    temperature: float = typer.Option(0.6, "--temperature", min=0.0, help="Sampling temperature; 0 is greedy."),
    top_p: float = typer.Option(0.95, "--top-p", min=0.0, max=1.0, help="Nucleus sampling mass (1 switches it off)."),
    top_k: int = typer.Option(20, "--top-k", min=0, help="Top-k filter (0 switches it off)."),
    thinking: bool = typer.Option(None, "--thinking/--no-thinking", help="Pass enable_thinking to the chat template (Qwen3); default: the template's own default."),
    backend: str = typer.Option("auto", "--backend", help="auto (vLLM when installed and a GPU is present), transformers or vllm."),
    limit: int = typer.Option(None, "--limit", min=1, help="Evaluate only the first N problems of each data set."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Prompts per generation call (each with k samples); lower it if memory runs out."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    force: bool = typer.Option(False, "--force", help="Delete an existing --out directory and start over."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out, skipping finished problems."),
) -> None:
    """Sample k replies per problem and report avg@k (95% CI), pass@k, reply length and epistemic markers."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from sdlab.config import build_config
    from sdlab.evaluate import EvalConfig, run_eval

    config = build_config(EvalConfig, dict(
        model=model, data=data, k=k, out=str(out), max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
        enable_thinking=thinking, backend=backend, limit=limit, batch_size=batch_size, seed=seed,
    ), source="sdlab eval options")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("problems"), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        tasks: dict[str, int] = {}

        def on_progress(dataset: str, done: int, total: int) -> None:
            if dataset not in tasks:
                tasks[dataset] = progress.add_task(dataset, total=total)
            progress.update(tasks[dataset], completed=done)

        metrics = run_eval(config, force=force, resume=resume, on_progress=on_progress)
    table = Table(title=f"{model}: {k} samples per problem")
    for column in ("dataset", f"avg@{k} (95% CI)", f"pass@{k}", "tokens", "markers", "truncated"):
        table.add_column(column, justify="left" if column == "dataset" else "right")
    for name, m in metrics.items():
        ci = f" [{m['avg@k_ci95'][0]:.3f}, {m['avg@k_ci95'][1]:.3f}]" if m["avg@k_ci95"] else ""
        table.add_row(name, f"{m['avg@k']:.3f}{ci}", f"{m['pass@k']:.3f}", f"{m['mean_response_tokens']:.0f}", f"{m['mean_markers_paper']:.1f}", f"{m['truncated_fraction']:.0%}")
    Console().print(table)
    print(f"{out}/metrics.json")


@app.command()
def probe(
    recipe: Path = typer.Argument(None, help="Optional probe recipe (recipes/probe/organism.yaml); options below override it."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. alpha=1.0 entropy_under=model"),
    model: str = typer.Option(None, "--model", help="Model directory, hub id or `organism`."),
    data: str = typer.Option(None, "--data", help="Problems: parquet/JSONL path, datasets dir or an organism spec (organism:linmod:512)."),
    contexts: str = typer.Option(None, "--contexts", help="Comma-separated: none, solution, solution_nothink, regenerated, partial:F, hint."),
    n: int = typer.Option(None, "--n", min=1, help="Samples per problem and context (study: 8)."),
    out: Path = typer.Option(None, "--out", help="Output directory (probe.json, probe.md, samples.jsonl, heatmap.html)."),
    limit_problems: int = typer.Option(None, "--limit-problems", min=1, help="Stop once this many problems are in the band (study: 100)."),
    band: str = typer.Option(None, "--band", help="lo,hi: keep problems solved lo to hi times of n unguided (study: 1,4)."),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", min=1),
    seed: int = typer.Option(None, "--seed"),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out directory."),
) -> None:
    """Context-richness probe: score, length and epistemic words per teacher context (the study's Table 1),
    the information gap H(y|x) - H(y|x,c), the student/teacher divergence split by marker tokens, and a token heatmap."""
    import logging

    from sdlab.config import apply_overrides, build_config, read_yaml
    from sdlab.probe import ProbeConfig, run_probe
    from sdlab.probe_report import format_tables

    values = read_yaml(recipe) if recipe else {}
    apply_overrides(values, overrides or [])
    options = dict(model=model, data=data, contexts=contexts, n=n, out=str(out) if out else None, limit_problems=limit_problems, max_new_tokens=max_new_tokens, seed=seed)
    values.update({key: value for key, value in options.items() if value is not None})
    if band is not None:
        try:
            values["band"] = [int(x) for x in band.split(",")]
        except ValueError:
            raise SdlabError(f"--band {band!r}: give two integers lo,hi such as 1,4") from None
    config = build_config(ProbeConfig, values, source=str(recipe) if recipe else "sdlab probe options")
    if config.model == "organism":
        from sdlab.train import resolve_model

        config.model = resolve_model(config.model)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = run_probe(config, force=force)
    print(format_tables(summary))
    print(f"\n{config.out}: probe.json, probe.md, samples.jsonl, heatmap.html ({summary['wall_time_s']:.0f} s)")


@app.command()
def sweep(
    sweep_file: Path = typer.Argument(..., help="A sweep file (recipes/sweeps/*.yaml): base recipe + grid."),
    overrides: list[str] = typer.Argument(None, help="key=value: sweep keys (output_dir=..., final_eval.k=4) or recipe keys for every cell (steps=2)."),
    force: bool = typer.Option(False, "--force", help="Delete the sweep directory and run every cell again."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the cells and validate every recipe; run nothing."),
) -> None:
    """Run a grid of training runs with matched data, batch, rollout budget and evaluation; resumable.
    Writes cells/<cell>/ (one `sdlab train` run each), results.csv, aggregate.csv (mean, 95% CI over seeds), results.json."""
    import logging

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sdlab.sweep import load_sweep, run_sweep, validate_sweep, varied_keys

    config = load_sweep(sweep_file, overrides or [])
    cells = validate_sweep(config)
    print(f"{sweep_file}: {len(cells)} cells over {', '.join(config.grid)}; varied keys: {', '.join(sorted(varied_keys([c for _, c in cells]) - {'output_dir'})) or 'none'}")
    if dry_run:
        for cell, train_config in cells:
            print(f"  {cell.name}\t{train_config.output_dir}")
        return
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("cells"), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(config.name, total=len(cells))

        def on_cell(index: int, total: int, cell, status: str) -> None:
            progress.update(task, completed=index, description=f"{config.name}: {cell.name} ({status})")

        results = run_sweep(config, force=force, on_cell=on_cell)
        progress.update(task, completed=len(cells), description=config.name)
    print_aggregate(results)
    print(f"{config.output_dir}: results.csv, aggregate.csv, results.json")


def print_aggregate(results: dict) -> None:
    from rich.table import Table

    # the rollouts' accuracy and not their reward: a fraction under any reward function
    headers = {"train_accuracy": "rollout accuracy", "train_response_tokens_mean": "tokens", "train_markers_per_response": "markers", "id_avg@k": "ID avg@k", "ood_avg@k": "OOD avg@k"}
    columns = [c for c in headers if any(f"{c}_mean" in row for row in results["aggregate"])]
    group_by = [axis for axis in results["axes"] if axis not in results["aggregate_over"]]
    table = Table(title=f"{results['name']}: final values, mean [95% CI] over {', '.join(results['aggregate_over'])}")
    for column in (*group_by, "finished", *(headers[c] for c in columns)):
        table.add_column(column)
    for row in results["aggregate"]:
        cells = []
        for column in columns:
            mean, low, high = row.get(f"{column}_mean"), row.get(f"{column}_ci_low"), row.get(f"{column}_ci_high")
            cells.append("" if mean is None else f"{mean:.3g}" + (f" [{low:.3g}, {high:.3g}]" if low is not None else ""))
        table.add_row(*(str(row.get(axis, "")) for axis in group_by), f"{row['finished']}/{row['n']}", *cells)
    Console().print(table)


@app.command()
def report(
    inputs: list[Path] = typer.Argument(..., help="Run, sweep, probe or eval directories (or a directory holding several)."),
    out: Path = typer.Option(None, "--out", help="HTML file to write; default: report.html in the first input directory."),
    markdown: Path = typer.Option(None, "--markdown", help="Also write the probe tables and sweep results as Markdown (what the README quotes)."),
) -> None:
    """One self-contained HTML report (training dynamics, probe table, ID/OOD results, coverage, pass@k, SFT table);
    every number also goes to report_data/*.csv beside it. Sweep directories of one experiment run apart
    (same sweep and settings, other seeds) are pooled: their intervals cover all the seeds."""
    from sdlab.report import build_report

    path = build_report(inputs, out or inputs[0] / "report.html", markdown=markdown)
    print(f"{path} (data: {path.parent / 'report_data'})")


@app.command()
def demo(
    overrides: list[str] = typer.Argument(None, help="key=value overrides of the demo recipe, e.g. out=runs/demo2 seed=1"),
    recipe: Path = typer.Option(None, "--recipe", help="Demo recipe (default: recipes/demo.yaml)."),
    force: bool = typer.Option(False, "--force", help="Start the demo directory over instead of resuming it."),
) -> None:
    """The main job: build the organism, probe contexts, train GRPO and SDPO at equal budget,
    evaluate in and out of distribution, and write one HTML report. Rerun to resume."""
    import logging

    from sdlab.demo import load_demo_config, run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = load_demo_config(recipe, overrides or [])
    report_path = run_demo(config, force=force, say=lambda text: console.print(f"[bold cyan]demo[/] {text}", highlight=False))
    print(f"report: {report_path}")


organism_app = typer.Typer(help="The model organism: a tiny reasoning model pretrained on CPU in minutes (docs/organism.md).", no_args_is_help=True)
app.add_typer(organism_app, name="organism")


@organism_app.command("build")
def organism_build(
    out: Path = typer.Option(None, "--out", help="Model directory; default $SDLAB_HOME/organism/<size>-seed<seed> (SDLAB_HOME: ~/.cache/sdlab)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the corpus, the initial weights and the data order."),
    size: str = typer.Option("tiny", "--size", help="tiny (default, minutes on 2 cores), small (longer), test (seconds, for tests)."),
    corpus: str = typer.Option("10", "--corpus", help="Corpus version: 10 (the default organism), 11 (candidate: a concise derivation beside the search and a teacher that derives; cached as <size>-seed<seed>-v11), 11-nomidsearch (11's ablation: no mid-search switch to the derivation)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when a build with the same settings is cached."),
    threads: int = typer.Option(2, "--threads", help="CPU threads for torch (another count trains to other weights)."),
) -> None:
    """Pretrain the organism (or reuse the cached build) and print its directory."""
    from sdlab.organism.build import build_organism

    print(build_organism(out, seed=seed, size=size, corpus=corpus, force=force, threads=threads))


@organism_app.command("data")
def organism_data(
    family: str = typer.Argument(..., help="linmod, linmod-eval, linmod-bare, linmod-hard, sqmod, narrow[-eval], check[-eval], ..."),
    n: str = typer.Option(..., "--n", help="Number of distinct problems, or AxB (A problems repeated B times)."),
    out: Path = typer.Option(..., "--out", help="JSONL file to write (one Problem per line)."),
    seed: int = typer.Option(0, "--seed", help="Which problems: the first N of this seed's permutation."),
) -> None:
    """Export organism problems as JSONL (loadable with `sdlab.data.load_problems`)."""
    from dataclasses import asdict

    from sdlab.organism.tasks import load_organism_problems
    from sdlab.rundir import append_jsonl

    problems = load_organism_problems(f"organism:{family}:{n}:{seed}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    for problem in problems:
        append_jsonl(out, {**asdict(problem), "messages": list(problem.messages)})
    print(f"{out}: {len(problems)} problems")


@organism_app.command("measure")
def organism_measure(
    model: Path = typer.Argument(..., help="A built organism directory."),
    n: int = typer.Option(64, "--n", help="Problems per (family, context) row."),
    seed: int = typer.Option(0, "--seed", help="Problem choice and sampling seed."),
    temperature: float = typer.Option(0.6, "--temperature"),
    out: Path = typer.Option(None, "--out", help="JSON file for the table."),
    threads: int = typer.Option(2, "--threads", help="CPU threads for torch (on an idle 2-core machine two were faster than one; on busy cores use one)."),
) -> None:
    """Sample the organism on every family and context; print the abilities table, the
    strategies (search or derivation) and their accuracy, the copy probe (where its checks copy
    the question's numbers from), the distance probe (how far back it can read a context), the
    doubt probe (the teacher's doubt after a failed check in the student's own responses) and
    the checklist of corpus version 11's gates."""
    import torch

    from sdlab.generation import load_model_and_tokenizer
    from sdlab.organism.card import STRATEGY_COLUMNS, abilities_table
    from sdlab.organism.gates import checklist, v11_gates
    from sdlab.organism.measure import copy_probe, distance_probe, doubt_probe, measure_abilities, missing_abilities
    from sdlab.organism.tasks import load_organism_problems
    from sdlab.rundir import write_json

    torch.set_num_threads(threads)
    loaded, tokenizer = load_model_and_tokenizer(str(model))
    samples: dict = {}
    rows = measure_abilities(loaded, tokenizer, seed=seed, n=n, temperature=temperature, show_progress=True, strategies=True, samples=samples)
    copies = copy_probe(loaded, tokenizer, n=n, seed=seed)
    distances = distance_probe(loaded, tokenizer, n=n, seed=seed)
    doubt = doubt_probe(loaded, tokenizer, samples[("linmod-eval", "none")], load_organism_problems(f"organism:linmod-eval:{n}:{seed}"))
    missing = missing_abilities(rows)
    gates = v11_gates(rows, doubt)
    if out is not None:
        write_json(out, {"model": str(model), "n": n, "seed": seed, "temperature": temperature, "rows": rows, "missing_abilities": missing, "copy_probe": copies, "distance_probe": distances, "doubt_probe": doubt, "v11_gates": gates})
    print(abilities_table(rows))
    print("\nStrategies (search, derivation, or a search that turned to the derivation) and their accuracy")
    print(abilities_table(rows, STRATEGY_COLUMNS))
    print("\nMissing abilities (the experiments rely on them): " + ("; ".join(missing) or "none"))
    print("\nCopy probe (linmod-eval): P(the question's own number) at each slot of a check")
    print("| check | coefficient a | addend b | target c |\n| --- | --- | --- | --- |")
    for position, slots in copies.items():
        print(f"| {position.replace('_', ' ')} | {slots['a']:.2f} | {slots['b']:.2f} | {slots['c']:.2f} |")
    print("\nDistance probe: next-token loss of corpus responses after whole unrelated chats (nats/token)")
    print("| chats before, at least (tokens) | " + " | ".join(map(str, distances)) + " |\n| --- |" + " --- |" * len(distances))
    print("| loss | " + " | ".join(f"{loss:.4f}" for loss in distances.values()) + " |")
    print(f"\nDoubt probe: after {doubt['places']} failed checks in {doubt['responses']} of the student's responses (linmod-eval, no context)")
    print("| reader | P(the doubt token written) | mass on doubt openings | P(derivation opening) |\n| --- | --- | --- | --- |")
    for role, context in (("student", "no context"), ("teacher", "the solution in context")):
        print(f"| {role} ({context}) | {doubt[role + '_written']:.3f} | {doubt[role + '_doubt_mass']:.3f} | {doubt[role + '_derivation']:.3f} |")
    print("\nCorpus version 11's gates (docs/organism.md; [?]: not measured):\n" + checklist(gates))


@organism_app.command("mechanics")
def organism_mechanics(
    dirs: list[Path] = typer.Argument(..., help="`sdlab eval` directories, run directories (their final_eval is read) or sweep cells."),
) -> None:
    """Read the organism's search mechanics off saved evaluation samples, without sampling:
    candidates tried, first candidate right, recovery after a wrong one, give-ups, whether the
    checks copy, look up and compare right (did training stop the search, or break the check?),
    and which strategy each response used (search or derivation) with the accuracy of each."""
    from sdlab.organism.card import STRATEGY_COLUMNS, abilities_table
    from sdlab.organism.measure import mechanics_of_evaluation

    for path in dirs:
        eval_dir = path / "final_eval" if (path / "final_eval").is_dir() else path
        rows = mechanics_of_evaluation(eval_dir)
        tables = abilities_table(rows) + "\n\n" + abilities_table(rows, STRATEGY_COLUMNS) if rows else "(no organism data set among its samples)"
        print(f"\n{eval_dir}\n{tables}")


if __name__ == "__main__":
    main()
