"""Benchmark (b): what `sdlab train` costs on top of a bare TRL GRPOTrainer with the same settings.

    .venv/bin/python bench/wrapper_overhead.py            # goal: median ratio <= 1.05
    .venv/bin/python bench/wrapper_overhead.py --steps 20 --repeats 5

A: `sdlab.training.run.run_training` (run dir, config/versions files, EpistemicMonitor with marker
counts and answer extraction, rollout samples, entropy capture, final model save, summary).
B: `trl.GRPOTrainer` built by hand on the same tiny model, data, reward (sdlab's math reward,
so both grade identically), seed and TrainingArguments, checkpointing at the same step.
Both are timed from construction to the end of training; A and B alternate so that machine
load drifts hit both, and the median of the per-pair ratios is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.tiny builds the tiny model without any download


def settings(args) -> dict:
    return dict(steps=args.steps, batch=args.batch, rollouts=args.rollouts, max_completion_length=args.tokens, lr=1e-3, seed=0)


def run_sdlab(model_dir: Path, problems: Path, out: Path, s: dict) -> float:
    from sdlab.config.checks import load_train_config
    from sdlab.training.run import run_training

    overrides = [f"{k}={v}" for k, v in s.items()] + [
        "method=grpo", f"model={model_dir}", f"output_dir={out}", f"data.train={problems}", f"save_steps={s['steps']}", "temperature=1.0",
    ]
    config = load_train_config(None, overrides)
    started = time.perf_counter()
    run_training(config, force=True)
    return time.perf_counter() - started


def run_bare(model_dir: Path, problems: Path, out: Path, s: dict) -> float:
    from datasets import Dataset
    from transformers import set_seed
    from trl import GRPOConfig, GRPOTrainer

    from sdlab.training.grpo import math_reward

    rows = [json.loads(line) for line in problems.read_text().splitlines()]
    started = time.perf_counter()
    set_seed(s["seed"])
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": r["question"]}], "answer": r["answer"]} for r in rows])
    args = GRPOConfig(
        output_dir=str(out), max_steps=s["steps"], learning_rate=s["lr"], lr_scheduler_type="constant", seed=s["seed"], data_seed=s["seed"],
        per_device_train_batch_size=s["batch"] * s["rollouts"], gradient_accumulation_steps=1, steps_per_generation=1,
        num_generations=s["rollouts"], max_completion_length=s["max_completion_length"], temperature=1.0, top_p=1.0, top_k=0,
        save_strategy="steps", save_steps=s["steps"], save_total_limit=2, logging_steps=1, report_to=[],
        bf16=False, gradient_checkpointing=False, use_cpu=True, dataloader_num_workers=0, warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
    )
    GRPOTrainer(model=str(model_dir), reward_funcs=math_reward, args=args, train_dataset=dataset).train()
    return time.perf_counter() - started


@contextlib.contextmanager
def quiet():
    """Silence the trainers' progress bars and log prints (file descriptors 1 and 2) while timing."""
    saved = os.dup(1), os.dup(2)
    with open(os.devnull, "w") as null:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(null.fileno(), 1), os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4, help="prompts per step")
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32, help="max completion tokens")
    parser.add_argument("--repeats", type=int, default=5, help="A/B pairs")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both (contended threads spin-wait)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    import logging

    import transformers

    from tests.tiny import build_tiny_model

    transformers.logging.set_verbosity_error()
    logging.disable(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="sdlab-bench-"))
    try:
        model_dir = build_tiny_model(work / "model")
        problems = work / "problems.jsonl"
        problems.write_text("".join(json.dumps({"id": f"p{i}", "question": f"What is {i} + {i}? Put the answer in \\boxed{{}}.", "answer": str(2 * i)}) + "\n" for i in range(64)))
        s = settings(args)
        with quiet():
            run_bare(model_dir, problems, work / "warmup", s)  # imports, grader workers, first-call caches
        ratios = []
        for repeat in range(args.repeats):
            with quiet():
                a = run_sdlab(model_dir, problems, work / f"a{repeat}", s)
                b = run_bare(model_dir, problems, work / f"b{repeat}", s)
            ratios.append(a / b)
            print(f"pair {repeat + 1}: sdlab {a:.2f} s, bare TRL {b:.2f} s, ratio {a / b:.3f}", flush=True)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"median ratio sdlab / bare TRL GRPO: {statistics.median(ratios):.3f} ({args.steps} steps, {args.batch} prompts x {args.rollouts} rollouts, {args.tokens} tokens, {args.repeats} pairs)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
