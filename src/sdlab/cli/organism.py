"""`sdlab organism ...`: build, export, measure and read the shipped model organism."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from sdlab.organism.corpus import DEFAULT_CORPUS, DESIGNS

BUILD_THREADS = 1  # sdlab.organism.build.BUILD_THREADS (named here so that `--help` need not load torch)

class OrganismSize(str, Enum):
    """The sizes of `sdlab.organism.build.SIZES` (named here so that `--help` need not load torch)."""

    tiny = "tiny"
    small = "small"
    test = "test"


organism_app = typer.Typer(help="The model organism: a tiny reasoning model pretrained on CPU in minutes (docs/organism.md).", no_args_is_help=True)


@organism_app.command("build")
def organism_build(
    out: Path = typer.Option(None, "--out", help="Model directory; default $SDLAB_HOME/organism/<size>-seed<seed>[-v<corpus> for a version other than the default] (SDLAB_HOME: ~/.cache/sdlab)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the corpus, the initial weights and the data order."),
    size: OrganismSize = typer.Option(OrganismSize.tiny, "--size", help="tiny: minutes on 2 cores; small: longer; test: seconds, for tests."),
    corpus: str = typer.Option(DEFAULT_CORPUS, "--corpus", help=f"Corpus version, one of {', '.join(DESIGNS)} (docs/organism.md): 10 searches and copies a context's answer; 11 (shipped) adds a concise derivation and a teacher that derives; 11-nomidsearch is its ablation without the mid-search switch to the derivation; 13 to 15 (tried, not adopted) let the teacher read a student's search before it derives; 15 never derives at p = 13."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when a build with the same settings is cached."),
    threads: int = typer.Option(BUILD_THREADS, "--threads", help="CPU threads for torch (another count trains to other weights; the shipped organism was built with the default)."),
) -> None:
    """Pretrain the organism (or reuse the cached build), print its directory and whether it
    reproduces the weights shipped with sdlab (the same sha256 needs the shipped build's CPU
    class, thread count and precision, named in its build.json)."""
    from sdlab.cli.common import console
    from sdlab.core.io import read_json
    from sdlab.organism.build import BUILD_FILE, build_organism, cpu_class, shipped_organism_dir, weights_sha256

    built = build_organism(out, seed=seed, size=size.value, corpus=corpus, force=force, threads=threads)
    print(built)
    shipped = shipped_organism_dir(size=size.value, seed=seed, corpus=corpus)
    if shipped is not None:
        record = read_json(shipped / BUILD_FILE)
        if weights_sha256(built) == record["weights_sha256"]:
            console.print(f"reproduces the shipped weights (sha256 {record['weights_sha256'][:12]}...)")
        else:
            console.print(
                f"[yellow]other weights than the shipped ones[/] (sha256 {record['weights_sha256'][:12]}..., built on {record['cpu']}, "
                f"{record['threads']} thread(s), {record['precision']}; this CPU: {cpu_class()}, {threads} thread(s)). "
                "Runs use the shipped organism unless given this directory as their model.",
                soft_wrap=True,  # one line, as errors are: its sha256 and CPU name stay whole for copy and grep
            )


@organism_app.command("data")
def organism_data(
    family: str = typer.Argument(..., help="linmod, linmod-eval, linmod-bare, linmod-hard, sqmod, narrow[-eval], check[-eval], ..."),
    n: str = typer.Option(..., "--n", help="Number of distinct problems, or AxB (A problems repeated B times)."),
    out: Path = typer.Option(..., "--out", help="JSONL file to write (one Problem per line)."),
    seed: int = typer.Option(0, "--seed", help="Which problems: the first N of this seed's permutation."),
) -> None:
    """Export organism problems as JSONL (loadable with `sdlab.core.data.load_problems`)."""
    from dataclasses import asdict

    from sdlab.core.io import append_jsonl
    from sdlab.organism.problems import load_organism_problems

    problems = load_organism_problems(f"organism:{family}:{n}:{seed}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    for problem in problems:
        append_jsonl(out, {**asdict(problem), "messages": list(problem.messages)})
    print(f"{out}: {len(problems)} problems")


@organism_app.command("measure")
def organism_measure(
    model: str = typer.Argument(..., help="A built organism directory, or `organism` for the default one."),
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

    from sdlab.core.io import write_json
    from sdlab.evaluation.generation import load_model_and_tokenizer
    from sdlab.organism.card import STRATEGY_COLUMNS, abilities_table
    from sdlab.organism.gates import checklist, v11_gates
    from sdlab.organism.measure import copy_probe, distance_probe, doubt_probe, measure_abilities, missing_abilities
    from sdlab.organism.problems import load_organism_problems
    from sdlab.providers import resolve_model

    torch.set_num_threads(threads)
    model = resolve_model(model)
    loaded, tokenizer = load_model_and_tokenizer(model)
    samples: dict = {}
    rows = measure_abilities(loaded, tokenizer, seed=seed, n=n, temperature=temperature, show_progress=True, strategies=True, samples=samples)
    copies = copy_probe(loaded, tokenizer, n=n, seed=seed)
    distances = distance_probe(loaded, tokenizer, n=n, seed=seed)
    doubt = doubt_probe(loaded, tokenizer, samples[("linmod-eval", "none")], load_organism_problems(f"organism:linmod-eval:{n}:{seed}"))
    missing = missing_abilities(rows)
    gates = v11_gates(rows, doubt)
    if out is not None:
        write_json(out, {"model": model, "n": n, "seed": seed, "temperature": temperature, "rows": rows, "missing_abilities": missing, "copy_probe": copies, "distance_probe": distances, "doubt_probe": doubt, "v11_gates": gates})
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
    print("\nThe same, by which failed check of its response a place follows (teacher / student)")
    print("| failed check | places | ratio of P(doubt written) | mass on doubt openings | P(derivation opening) |\n| --- | --- | --- | --- | --- |")
    for label, split in doubt["by_failed_check"].items():
        print(f"| {label} | {split['places']} | {split['ratio_written']:.2f} | {split['teacher_doubt_mass']:.3f} / {split['student_doubt_mass']:.3f} | {split['teacher_derivation']:.3f} / {split['student_derivation']:.3f} |")
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
