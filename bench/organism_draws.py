"""How often does a build recipe give an organism with every required ability?

One build is one draw: the same recipe, trained from other seeds or on another CPU, learns or
misses the copy after a context, the lookups or the comparison (docs/measurements.md#organism).
This pretrains each (recipe, seed) pair, measures it with the build's own card
(`measure_abilities`, 16 problems a row) and judges it with `missing_abilities`, then prints the
healthy share per recipe. A recipe is `NAME` or `NAME:field=value,...` over the size's `Size`
fields, plus `bf16` for autocast steps (what the build does where the CPU has native bf16) and
`corpus=VERSION` for another corpus version (a version-11 draw also measures its strategy rows
and lists the gates its 16-problem rows fail, `gates.v11_gates`):

    python bench/organism_draws.py --recipe v8 --recipe c3:steps=2200 --seeds 0-3 --workers 2
    python bench/organism_draws.py --recipe v8 --recipe v8-bf16:bf16 --device cuda --workers 6 --seeds 0-11
    python bench/organism_draws.py --recipe v11:corpus=11,bf16 --recipe v11-abl:corpus=11-nomidsearch,bf16 --seeds 0-1

Each draw appends one JSON line to --out as it ends, so an interrupted run keeps what finished
and a rerun skips it. On a GPU the steps take another floating-point path than any CPU: the
shares measure the recipe's draw-to-draw spread there, not the CPU default build.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from collections import Counter
from dataclasses import fields, replace
from pathlib import Path


def parse_recipe(text: str) -> tuple[str, dict, bool, str]:
    """`c3:steps=2200,lr=0.004` -> ("c3", {"steps": 2200, "lr": 0.004}, False, "10"); `x:bf16`
    sets bf16, `x:corpus=11` the corpus version."""
    from sdlab.organism.build import Size
    from sdlab.organism.corpus import DEFAULT_CORPUS, DESIGNS

    name, _, spec = text.partition(":")
    types = {f.name: f.type for f in fields(Size)}
    changes, bf16, corpus = {}, False, DEFAULT_CORPUS
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        if key == "bf16":
            bf16 = True
        elif key == "corpus" and value in DESIGNS:
            corpus = value
        elif key in types:
            changes[key] = float(value) if types[key] in (float, "float") else int(value)
        else:
            raise SystemExit(f"recipe {text!r}: {item!r} is not a Size field ({', '.join(types)}), bf16 or corpus=VERSION ({', '.join(DESIGNS)})")
    return name, changes, bf16, corpus


def draw(recipe: str, seed: int, *, size: str, device: str) -> dict:
    import torch

    from sdlab.organism.build import MEASURE_N, loss_summary, pretrain, size_spec, target_lists, untrained_organism, weights_sha256
    from sdlab.organism.gates import v11_gates
    from sdlab.organism.measure import measure_abilities, missing_abilities

    _, changes, bf16, corpus = parse_recipe(recipe)
    spec = replace(size_spec(size, corpus), **changes)
    torch.set_num_threads(1)
    started = time.time()
    documents, tokenizer, token_lists, model = untrained_organism(spec, seed=seed, corpus=corpus)
    targets = target_lists(tokenizer, documents, token_lists)
    losses = pretrain(model.to(device), token_lists, spec, seed=seed, bf16=bf16, show_progress=False, targets=targets)
    trained = time.time()
    model = model.cpu()
    with tempfile.TemporaryDirectory() as saved:  # the build's file, to compare a draw with a build
        model.save_pretrained(saved, safe_serialization=True)
        weights = weights_sha256(saved)
    later = corpus != "10"
    rows = measure_abilities(model, tokenizer, seed=seed, n=MEASURE_N, quick=size == "test", strategies=later)
    return {
        "recipe": recipe, "seed": seed, "size": size, "device": device, "train_seconds": round(trained - started, 1), "weights_sha256": weights,
        **loss_summary(losses, main_steps=spec.steps),
        "missing": missing_abilities(rows), "rows": [{k: v for k, v in row.items() if isinstance(v, (int, float, str))} for row in rows],
        **({"gates_failed": [g["gate"] for g in v11_gates(rows) if g["passed"] is False]} if later else {}),
    }


def ability_of(missing: str) -> str:
    """"the lookup facts of a check: check_lookups_right 0.00 on ..." -> "the lookup facts of a check"."""
    return missing.split(":")[0]


def work(tasks, out: str, size: str, device: str) -> None:
    for recipe, seed in tasks:
        record = draw(recipe, seed, size=size, device=device)
        with open(out, "a") as f:  # one short line per draw: appends from several workers stay whole
            f.write(json.dumps(record) + "\n")
        print(f"{recipe} seed {seed}: {'healthy' if not record['missing'] else 'lacks ' + '; '.join(map(ability_of, record['missing']))}", flush=True)


def seeds_of(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", action="append", required=True, help="NAME or NAME:field=value,...; repeatable")
    parser.add_argument("--seeds", default="0-1", help="a seed or a range, e.g. 0-7")
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=1, help="draws side by side, one process (one torch thread) each")
    parser.add_argument("--out", default="runs/bench/organism_draws.jsonl")
    args = parser.parse_args()
    for recipe in args.recipe:
        parse_recipe(recipe)  # a typo fails before any draw
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["recipe"], r["seed"], r["size"], r["device"]) for r in map(json.loads, out.read_text().splitlines())} if out.is_file() else set()
    tasks = [(recipe, seed) for seed in seeds_of(args.seeds) for recipe in args.recipe if (recipe, seed, args.size, args.device) not in done]
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=work, args=(tasks[i::args.workers], str(out), args.size, args.device)) for i in range(args.workers)]
    for process in workers:
        process.start()
    for process in workers:
        process.join()
    records = [r for r in map(json.loads, out.read_text().splitlines()) if r["size"] == args.size and r["device"] == args.device]
    print("\n| recipe | draws | healthy | missing most often |\n| --- | --- | --- | --- |")
    for recipe in args.recipe:
        mine = [r for r in records if r["recipe"] == recipe]
        counts = Counter(ability_of(sentence) for r in mine for sentence in r["missing"])
        common = "; ".join(f"{ability} ({n})" for ability, n in counts.most_common(3)) or "-"
        print(f"| {recipe} | {len(mine)} | {sum(not r['missing'] for r in mine)} | {common} |")


if __name__ == "__main__":
    main()
