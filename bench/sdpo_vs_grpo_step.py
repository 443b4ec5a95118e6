"""Benchmark (a): time of one SDPO step / one GRPO step at equal batch and rollout length.

    .venv/bin/python bench/sdpo_vs_grpo_step.py                      # goal: median ratio <= 1.25
    .venv/bin/python bench/sdpo_vs_grpo_step.py --steps 8 --repeats 3 --hidden 256 --layers 4 --monitor

GRPO: `sdlab.training.grpo.build_grpo_trainer` (TRL's GRPOTrainer). SDPO: `sdlab.training.sdpo.build_sdpo_trainer`
with the study's settings (fixed teacher, top-100 + tail, JSD 0.5). Same tiny random Qwen2
(tests.tiny), prompts, seed, batch (prompts x rollouts), max completion length, one optimizer
update per generation batch. A random model never emits EOS, so every rollout has the maximum
length in both. A deterministic reward (first token odd) makes about half the rollouts
successful, so SDPO builds teacher contexts and runs its teacher forward on every step.
Step time is the wall time from `on_step_begin` to `on_step_end` (generation, reward,
teacher context, losses, optimizer step); the first step is a warm-up and dropped. Runs
alternate GRPO/SDPO so machine-load drift hits both; the median over repeats of the
per-pair ratio of median step times is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.tiny builds the tiny model without any download
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def odd_first_token(prompts, completions, completion_ids=None, **kwargs):
    return [float(ids[0] % 2) for ids in completion_ids]


def step_times(build, model_dir: Path, out: Path, args) -> list[float]:
    from datasets import Dataset
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def __init__(self):
            self.times, self.started = [], 0.0

        def on_step_begin(self, *a, **k):
            self.started = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter() - self.started)

    data = Dataset.from_list([{"prompt": [{"role": "user", "content": f"What is {i} plus {i + 1}?"}], "answer": str(2 * i + 1)} for i in range(64)])
    timer = Timer()
    callbacks = [timer]
    if args.monitor:
        from sdlab.training.callbacks import EpistemicMonitor

        callbacks.append(EpistemicMonitor(out))
    config = dict(
        output_dir=str(out), max_steps=args.steps, per_device_train_batch_size=args.batch * args.rollouts, num_generations=args.rollouts,
        max_completion_length=args.tokens, learning_rate=1e-4, seed=0, logging_steps=args.steps,
    )
    extra = {"show_teacher": 0} if build.__name__ == "build_sdpo_trainer" else {}
    trainer = build(model=model_dir, dataset=data, args=config, reward_funcs=odd_first_token, callbacks=callbacks, **extra)
    trainer.train()
    return timer.times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4, help="prompts per step")
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32, help="max completion length")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--monitor", action="store_true", help="attach EpistemicMonitor to both (markers, entropies, divergence split)")
    args = parser.parse_args()

    import torch

    from sdlab.training.grpo import build_grpo_trainer
    from sdlab.training.sdpo import build_sdpo_trainer
    from tests.tiny import build_tiny_model

    torch.set_num_threads(args.threads)
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "model", hidden_size=args.hidden, num_layers=args.layers)
        for repeat in range(args.repeats):
            grpo = statistics.median(step_times(build_grpo_trainer, model_dir, Path(tmp) / f"grpo{repeat}", args))
            sdpo = statistics.median(step_times(build_sdpo_trainer, model_dir, Path(tmp) / f"sdpo{repeat}", args))
            ratios.append(sdpo / grpo)
            print(f"repeat {repeat}: GRPO {grpo:.3f} s/step, SDPO {sdpo:.3f} s/step, ratio {sdpo / grpo:.3f}", flush=True)
    print(f"{args.batch} prompts x {args.rollouts} rollouts x {args.tokens} tokens, hidden {args.hidden}, {args.layers} layers, {args.threads} thread(s), monitor {args.monitor}")
    print(f"SDPO / GRPO step time, median of {args.repeats}: {statistics.median(ratios):.3f} (goal <= 1.25)")


if __name__ == "__main__":
    main()
