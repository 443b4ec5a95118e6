"""Benchmark (a): time of one SDPO step / one GRPO step on a pinned workload.

    .venv/bin/python bench/sdpo_vs_grpo_step.py                     # default size; goal: median ratio <= 1.15
    .venv/bin/python bench/sdpo_vs_grpo_step.py --size large        # largest size; goal: median ratio <= 1.25

The workload is fixed so that a faster ratio can only come from cheaper code (sizes only change the model):
- 4 prompts x 8 rollouts per step, one optimizer update per generation batch, 6 steps (first dropped);
- 320 completion tokens and a 640-token teacher prompt limit, as in the organism recipes (recipes/organism/*.yaml).
  A random model never emits EOS, so every rollout and every sibling solution has that length:
  the teacher reads x + c + y with |c| = |y| = 320, a longer context than the organism's
  median 166-token solution, so the teacher's share of a step is if anything overstated;
- half the groups hold a success: in each batch (rows in group order) groups 0 and 2 succeed on a
  rollout whose first token is odd (so 1 - 2^-8 of them hold one), groups 1 and 3 never do. The
  measured fraction is printed.
Sizes: `default` is the tests' tiny random Qwen2 (hidden 64, 2 layers); `large` is hidden 256, 4 layers.

GRPO: `sdlab.grpo.build_grpo_trainer` (TRL's GRPOTrainer). SDPO: `sdlab.sdpo.build_sdpo_trainer`
with the study's settings (fixed teacher, top-100 + tail, JSD 0.5). Same model, prompts, seed,
batch and completion length. Step time is the wall time from `on_step_begin` to `on_step_end`
(generation, reward, teacher context, losses, optimizer step). Runs alternate GRPO/SDPO in one
process so machine-load drift hits both; the median over pairs of the per-pair ratio of median
step times is printed, with the spread (min, max).
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

PROMPTS, ROLLOUTS, TOKENS, STEPS = 4, 8, 320, 6
SIZES = {"default": (64, 2), "large": (256, 4)}  # hidden size, layers
GOALS = {"default": 1.15, "large": 1.25}
groups_with_success: list[float] = []


def half_the_groups_solvable(prompts, completions, completion_ids=None, **kwargs):
    """Even-numbered groups of the batch succeed on an odd first token; odd-numbered groups never succeed."""
    rewards = [float(ids[0] % 2 == 1 and (row // ROLLOUTS) % 2 == 0) for row, ids in enumerate(completion_ids)]
    groups = [rewards[start : start + ROLLOUTS] for start in range(0, len(rewards), ROLLOUTS)]
    groups_with_success.append(sum(max(group) for group in groups) / len(groups))
    return rewards


def step_times(build, model_dir: Path, out: Path, monitor: bool) -> list[float]:
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
    if monitor:
        from sdlab.callbacks import EpistemicMonitor

        callbacks.append(EpistemicMonitor(out))
    config = dict(
        output_dir=str(out), max_steps=STEPS, per_device_train_batch_size=PROMPTS * ROLLOUTS, num_generations=ROLLOUTS,
        max_completion_length=TOKENS, learning_rate=1e-4, seed=0, logging_steps=STEPS,
    )
    extra = {"show_teacher": 0, "max_teacher_prompt_length": 640} if build.__name__ == "build_sdpo_trainer" else {}
    trainer = build(model=model_dir, dataset=data, args=config, reward_funcs=half_the_groups_solvable, callbacks=callbacks, **extra)
    trainer.train()
    return timer.times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="default", help="model size (the workload is pinned)")
    parser.add_argument("--repeats", type=int, default=5, help="GRPO/SDPO pairs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--monitor", action="store_true", help="attach EpistemicMonitor to both (markers, entropies, divergence split)")
    args = parser.parse_args()

    import torch

    from sdlab.grpo import build_grpo_trainer
    from sdlab.sdpo import build_sdpo_trainer
    from tests.tiny import build_tiny_model

    torch.set_num_threads(args.threads)
    hidden, layers = SIZES[args.size]
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "model", hidden_size=hidden, num_layers=layers)
        for repeat in range(args.repeats):
            grpo = statistics.median(step_times(build_grpo_trainer, model_dir, Path(tmp) / f"grpo{repeat}", args.monitor))
            sdpo = statistics.median(step_times(build_sdpo_trainer, model_dir, Path(tmp) / f"sdpo{repeat}", args.monitor))
            ratios.append(sdpo / grpo)
            print(f"pair {repeat + 1}: GRPO {grpo:.3f} s/step, SDPO {sdpo:.3f} s/step, ratio {sdpo / grpo:.3f}", flush=True)
    print(
        f"workload: {PROMPTS} prompts x {ROLLOUTS} rollouts x {TOKENS} tokens, {STEPS} steps (first dropped), "
        f"groups with a success {statistics.mean(groups_with_success):.2f}; size {args.size} (hidden {hidden}, {layers} layers), "
        f"{args.threads} thread(s), monitor {args.monitor}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"SDPO / GRPO step time, median of {args.repeats} pairs: {statistics.median(ratios):.3f} (spread {min(ratios):.3f} to {max(ratios):.3f}; goal <= {GOALS[args.size]})")


if __name__ == "__main__":
    main()
