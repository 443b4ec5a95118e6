"""What one GRPO and one SDPO step cost on the organism at several prompts per step: the numbers
that size a sweep (steps x cells x seconds per step).

    OMP_NUM_THREADS=1 .venv/bin/python bench/organism_step_cost.py --batches 2 8 16 --steps 3

Each (method, batch) is one real `sdlab train` run of the organism recipes
(`recipes/organism/grpo.yaml`, `recipes/organism/sdpo_solution.yaml`: 8 rollouts, up to 320
tokens, one torch thread, no periodic evaluation) for `--steps` steps. The learning rate warms up
over 10 steps, so the policy (and its response length, which dominates a CPU step) stays the
initial one's. Reported: seconds per step (wall time of the run's training / steps, first step
included), and mean response tokens.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPES = {"grpo": REPO / "recipes" / "organism" / "grpo.yaml", "sdpo": REPO / "recipes" / "organism" / "sdpo_solution.yaml"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[2, 8, 16], help="prompts per step")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=["grpo", "sdpo"], choices=sorted(RECIPES))
    parser.add_argument("--data", default="organism:linmod:671")
    parser.add_argument("--model", default="organism", help="a model directory (default: the cached default organism)")
    args = parser.parse_args()

    from sdlab.config.checks import load_train_config
    from sdlab.core.io import read_jsonl
    from sdlab.training.run import run_training

    table = ["| method | prompts per step | rollouts | s/step | response tokens (mean) |", "| --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        for batch in args.batches:
            for method in args.methods:
                out = Path(tmp) / f"{method}-{batch}"
                overrides = [f"output_dir={out}", f"model={args.model}", f"steps={args.steps}", f"batch={batch}", "eval.every=0",
                             f"data.train={args.data}", "save_steps=1000", "logging.samples_per_step=0"]
                summary = run_training(load_train_config(RECIPES[method], overrides), force=True)
                rows = read_jsonl(out / "metrics.jsonl")
                tokens = sum(r["response_tokens_mean"] for r in rows) / len(rows)
                table.append(f"| {method} | {batch} | 8 | {summary['wall_time_s'] / args.steps:.1f} | {tokens:.0f} |")
    print("\n".join(table))  # after the trainers' own log lines


if __name__ == "__main__":
    main()
