"""Benchmark (b): training throughput of sdlab's organism GRPO and SDPO recipes against bare TRL with the same settings.

    .venv/bin/python bench/wrapper_overhead.py                     # goal: median ratio <= 1.05 for each method
    .venv/bin/python bench/wrapper_overhead.py --model organism    # the organism itself (built on first use)

A: `sdlab.training.run.run_training` on recipes/organism/grpo.yaml and recipes/organism/sdpo_solution.yaml
(run dir, config/versions files, EpistemicMonitor with marker counts and answer extraction,
rollout samples, entropy capture, teacher audit, checkpoint and final model save, summary).
B: bare `trl.GRPOTrainer` / `trl.experimental.sdpo.SDPOTrainer` built from the same recipe values
(`sdlab.training.args.common_args` and `rollout_args` give the TrainingArguments; the SDPO fields are the
recipe's), no sdlab subclass and no callbacks, checkpointing at the same step. Both use the reward
`tests.tiny.half_the_groups_solvable` (half the groups hold a success), so SDPO has teacher work
to do on a random model, and neither pays for the math grader. The recipes' batch (2 prompts x 8
rollouts) and 320-token completions are kept; `--steps` replaces their length. Each is timed from
construction to the end of training; A and B alternate so that machine-load drifts hit both.
Throughput is completions per second (steps x prompts x rollouts / wall time), median over pairs;
the sdlab / bare ratio is given in wall time and in CPU time of this one-thread process (robust to
other work on shared cores).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.tiny builds the tiny model without any download
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
RECIPES = {"grpo": REPO / "recipes/organism/grpo.yaml", "sdpo": REPO / "recipes/organism/sdpo_solution.yaml"}


def load_recipe(method: str, *, model: str, out: Path, steps: int):
    from sdlab.config.checks import load_train_config

    overrides = [f"model={model}", f"output_dir={out}", f"steps={steps}", f"save_steps={steps}", "eval.every=0"]
    return load_train_config(RECIPES[method], overrides)


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(started: tuple[float, float]) -> tuple[float, float]:
    """(wall, CPU) seconds since `started`; CPU time of this one-thread process is robust to other work on the cores."""
    now = clocks()
    return now[0] - started[0], now[1] - started[1]


def run_sdlab(config) -> tuple[float, float]:
    from sdlab.training.run import run_training
    from tests.tiny import half_the_groups_solvable

    started = clocks()
    run_training(config, force=True, reward_funcs=half_the_groups_solvable(config.rollouts))
    return since(started)


def run_bare(config) -> tuple[float, float]:
    from transformers import set_seed
    from trl import GRPOConfig, GRPOTrainer

    from sdlab.core.data import load_problems
    from sdlab.providers import resolve_model
    from sdlab.training.args import common_args, grpo_importance_sampling_args, rollout_args
    from sdlab.training.grpo import problems_to_dataset
    from sdlab.training.sdpo import ALIASES
    from tests.tiny import half_the_groups_solvable

    started = clocks()
    set_seed(config.seed)
    dataset = problems_to_dataset(load_problems(config.data.train, limit=config.data.limit))
    args = common_args(config, output_dir=Path(config.output_dir), max_steps=config.optimizer_steps) | rollout_args(config, processes=1)
    reward = half_the_groups_solvable(config.rollouts)
    if config.method == "grpo":
        args |= grpo_importance_sampling_args(config.importance_sampling_cap)
        trainer = GRPOTrainer(model=resolve_model(config.model), reward_funcs=reward, args=GRPOConfig(**args), train_dataset=dataset)
    else:
        from trl.experimental.sdpo import SDPOConfig, SDPOTrainer

        sd = config.sdpo
        sdpo_args = SDPOConfig(
            **args, max_prompt_length=config.max_prompt_length, teacher_model_kind=ALIASES[sd.teacher] if sd.teacher == "fixed" else sd.teacher,
            teacher_update_rate=sd.ema_rate, distillation_mode=ALIASES[sd.distillation], distillation_topk=sd.topk if sd.distillation == "topk" else None,
            distillation_add_tail=sd.tail, distillation_alpha=sd.alpha, success_reward_threshold=sd.success_threshold,
            distillation_weight=1.0 - sd.grpo_blend, distillation_is_clip=config.importance_sampling_cap, max_reprompt_len=sd.max_teacher_prompt_length,
        )
        trainer = SDPOTrainer(model=resolve_model(config.model), reward_funcs=reward, args=sdpo_args, train_dataset=dataset)
    trainer.train()
    return since(started)


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
    parser.add_argument("--model", default="tiny", help="`tiny` (the tests' random Qwen2, hidden 64, 2 layers), `organism`, or a model directory")
    parser.add_argument("--methods", nargs="+", choices=sorted(RECIPES), default=sorted(RECIPES))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3, help="A/B pairs per method")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both (the recipes' own setting)")
    args = parser.parse_args()

    import logging

    import torch
    import transformers

    from tests.tiny import build_tiny_model

    transformers.logging.set_verbosity_error()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="sdlab-bench-") as tmp:
        work = Path(tmp)
        model = str(build_tiny_model(work / "model")) if args.model == "tiny" else args.model
        for method in args.methods:
            with quiet():
                warm = load_recipe(method, model=model, out=work / f"{method}-warmup", steps=1)
                run_bare(warm)  # imports, first-call caches
            ratios, rates = {"CPU": [], "wall": []}, {"sdlab": [], "bare TRL": []}
            for repeat in range(args.repeats):
                with quiet():
                    config = load_recipe(method, model=model, out=work / f"{method}-a{repeat}", steps=args.steps)
                    torch.set_num_threads(args.threads)
                    a = run_sdlab(config)
                    torch.set_num_threads(args.threads)
                    b = run_bare(config.model_copy(update={"output_dir": str(work / f"{method}-b{repeat}")}))
                completions = args.steps * config.batch * config.rollouts
                ratios["wall"].append(a[0] / b[0])
                ratios["CPU"].append(a[1] / b[1])
                rates["sdlab"].append(completions / a[0])
                rates["bare TRL"].append(completions / b[0])
                print(
                    f"{method} pair {repeat + 1}: sdlab {a[0]:.1f} s ({completions / a[0]:.2f} completions/s, CPU {a[1]:.1f} s), "
                    f"bare TRL {b[0]:.1f} s ({completions / b[0]:.2f} completions/s, CPU {b[1]:.1f} s), ratio wall {a[0] / b[0]:.3f}, CPU {a[1] / b[1]:.3f}",
                    flush=True,
                )
            print(
                f"{method}: completions/s (wall) median sdlab {statistics.median(rates['sdlab']):.2f}, bare TRL {statistics.median(rates['bare TRL']):.2f}; "
                + "; ".join(f"{clock} time ratio sdlab / bare TRL median {statistics.median(v):.3f} (spread {min(v):.3f} to {max(v):.3f})" for clock, v in ratios.items())
            )
        print(
            f"model {args.model}, {args.steps} steps of {config.batch} prompts x {config.rollouts} rollouts x up to {config.max_completion_length} tokens, "
            f"{args.repeats} pairs, {args.threads} thread(s); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )


if __name__ == "__main__":
    main()
