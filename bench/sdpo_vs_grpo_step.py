"""Benchmark (a): time of one SDPO step / one GRPO step on a pinned workload.

    .venv/bin/python bench/sdpo_vs_grpo_step.py                     # default size; goal: median ratio <= 1.15
    .venv/bin/python bench/sdpo_vs_grpo_step.py --size large        # largest size; goal: median ratio <= 1.25

The workload is fixed so that a faster ratio can only come from cheaper code (sizes only change the model):
- 4 prompts x 8 rollouts per step, one optimizer update per generation batch, 6 steps (first dropped);
- 320 completion tokens and a 640-token teacher prompt limit, as in the organism recipes (recipes/organism/*.yaml).
  A random model never emits EOS, so every rollout and every sibling solution has that length:
  the teacher reads x + c + y with |c| = |y| = 320, a longer context than the organism's
  median 166-token solution, so the teacher's share of a step is if anything overstated;
- half the groups hold a success (`tests.tiny.half_the_groups_solvable`): in each batch groups 0
  and 2 succeed on a rollout whose first token is odd (so 1 - 2^-8 of them hold one), groups 1
  and 3 never do. The measured fraction is printed.
Sizes: `default` is the tests' tiny random Qwen2 (hidden 64, 2 layers); `large` is hidden 256, 4 layers.

GRPO: `sdlab.training.grpo.build_grpo_trainer` (TRL's GRPOTrainer). SDPO: `sdlab.training.sdpo.build_sdpo_trainer`
with the study's settings (fixed teacher, top-100 + tail, JSD 0.5). Same model, prompts, seed,
batch and completion length. A step runs from `on_step_begin` to `on_step_end`
(generation, reward, teacher context, losses, optimizer step), timed in CPU time of this
one-thread process (what the step costs, robust to other work on shared cores: the headline)
and in wall time. Runs alternate GRPO/SDPO in one process so machine-load drift hits both; the
median over pairs of the per-pair ratio of median step times is printed, with the spread, and
the ratio of the fastest steps (other work only adds time) as a check.
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


def step_times(build, model_dir: Path, out: Path, monitor: bool, cpu_steps: list[float]) -> tuple[float, float]:
    """Median (wall, CPU) seconds per step after the first; each step's CPU seconds go to `cpu_steps`."""
    from datasets import Dataset
    from transformers import TrainerCallback

    from tests.tiny import half_the_groups_solvable

    class Timer(TrainerCallback):
        def __init__(self):
            self.wall, self.cpu, self.started = [], [], (0.0, 0.0)

        def on_step_begin(self, *a, **k):
            self.started = time.perf_counter(), time.process_time()

        def on_step_end(self, *a, **k):
            self.wall.append(time.perf_counter() - self.started[0])
            self.cpu.append(time.process_time() - self.started[1])

    data = Dataset.from_list([{"prompt": [{"role": "user", "content": f"What is {i} plus {i + 1}?"}], "answer": str(2 * i + 1)} for i in range(64)])
    timer = Timer()
    callbacks = [timer]
    if monitor:
        from sdlab.training.callbacks import EpistemicMonitor

        callbacks.append(EpistemicMonitor(out))
    config = dict(
        output_dir=str(out), max_steps=STEPS, per_device_train_batch_size=PROMPTS * ROLLOUTS, num_generations=ROLLOUTS,
        max_completion_length=TOKENS, learning_rate=1e-4, seed=0, logging_steps=STEPS,
    )
    extra = {"show_teacher": 0, "max_teacher_prompt_length": 640} if build.__name__ == "build_sdpo_trainer" else {}
    reward = half_the_groups_solvable(ROLLOUTS, groups_with_success)
    trainer = build(model=model_dir, dataset=data, args=config, reward_funcs=reward, callbacks=callbacks, **extra)
    trainer.train()
    cpu_steps.extend(timer.cpu[1:])
    return statistics.median(timer.wall[1:]), statistics.median(timer.cpu[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="default", help="model size (the workload is pinned)")
    parser.add_argument("--repeats", type=int, default=5, help="GRPO/SDPO pairs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--monitor", action="store_true", help="attach EpistemicMonitor to both (markers, entropies, divergence split)")
    args = parser.parse_args()

    import torch

    from sdlab.training.grpo import build_grpo_trainer
    from sdlab.training.sdpo import build_sdpo_trainer
    from tests.tiny import build_tiny_model

    torch.set_num_threads(args.threads)
    hidden, layers = SIZES[args.size]
    ratios, cpu_steps = {"CPU": [], "wall": []}, {"grpo": [], "sdpo": []}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "model", hidden_size=hidden, num_layers=layers)
        for repeat in range(args.repeats):
            grpo = step_times(build_grpo_trainer, model_dir, Path(tmp) / f"grpo{repeat}", args.monitor, cpu_steps["grpo"])
            sdpo = step_times(build_sdpo_trainer, model_dir, Path(tmp) / f"sdpo{repeat}", args.monitor, cpu_steps["sdpo"])
            ratios["wall"].append(sdpo[0] / grpo[0])
            ratios["CPU"].append(sdpo[1] / grpo[1])
            print(
                f"pair {repeat + 1}: CPU GRPO {grpo[1]:.3f} s/step, SDPO {sdpo[1]:.3f} s/step, ratio {sdpo[1] / grpo[1]:.3f}; "
                f"wall GRPO {grpo[0]:.3f}, SDPO {sdpo[0]:.3f}, ratio {sdpo[0] / grpo[0]:.3f}",
                flush=True,
            )
    print(
        f"workload: {PROMPTS} prompts x {ROLLOUTS} rollouts x {TOKENS} tokens, {STEPS} steps (first dropped), "
        f"groups with a success {statistics.mean(groups_with_success):.2f}; size {args.size} (hidden {hidden}, {layers} layers), "
        f"{args.threads} thread(s), monitor {args.monitor}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    fastest = min(cpu_steps["sdpo"]) / min(cpu_steps["grpo"])  # load only adds time: a check on the medians
    print(f"SDPO / GRPO fastest step (CPU), over all {len(cpu_steps['grpo'])} steps of each: {fastest:.3f}")
    for clock, values in ratios.items():
        print(f"SDPO / GRPO step time ({clock}), median of {args.repeats} pairs: {statistics.median(values):.3f} (spread {min(values):.3f} to {max(values):.3f}; goal <= {GOALS[args.size]})")


if __name__ == "__main__":
    main()
