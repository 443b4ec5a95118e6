"""Benchmark: one organism pretraining step in fp32 against bf16 autocast, on this CPU.

    .venv/bin/python bench/organism_step_precision.py            # tiny size, 2 threads
    .venv/bin/python bench/organism_step_precision.py --steps 10

Why: the build uses autocast only where the CPU multiplies bf16 in hardware
(`sdlab.organism.build.bf16_is_native`); this measures what either choice would cost here.
The tiny size's model (random tokens, the default vocabulary size) takes the build's own
`train_step` on its main-phase batch (8 x 256) and its window-extension batch (2 x 1,024); fp32
and autocast steps alternate so that load drifts hit both, and the median per-pair ratio is
reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sdlab.organism.build import SIZES, bf16_is_native, make_model, train_step


class RandomVocabulary:
    """What `make_model` reads of a tokenizer, without building one."""

    eos_token_id, pad_token_id = 1, 0

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def convert_tokens_to_ids(self, token: str) -> int:
        return 2


def seconds_per_step(model, optimizer, batch: torch.Tensor, *, bf16: bool) -> float:
    started = time.perf_counter()
    train_step(model, optimizer, batch, batch, bf16=bf16)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="timed step pairs per batch shape")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=603, help="the default organism's vocabulary size")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = SIZES["tiny"]
    print(f"bf16 in hardware: {bf16_is_native()} (torch CPU capability {torch.backends.cpu.get_cpu_capability()}), {args.threads} threads")
    for shape in ((size.batch, size.seq_len), (size.extend_batch, size.extend_seq_len)):
        batch = torch.randint(0, args.vocab, shape, generator=torch.Generator().manual_seed(0))
        model = make_model(size, RandomVocabulary(args.vocab), seed=0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for bf16 in (False, True):  # one warm-up step each
            train_step(model, optimizer, batch, batch, bf16=bf16)
        fp32, autocast = [], []
        for _ in range(args.steps):
            fp32.append(seconds_per_step(model, optimizer, batch, bf16=False))
            autocast.append(seconds_per_step(model, optimizer, batch, bf16=True))
        ratio = statistics.median(a / f for a, f in zip(autocast, fp32))
        print(f"{shape[0]} x {shape[1]}: fp32 {statistics.median(fp32):.3f} s, bf16 autocast {statistics.median(autocast):.3f} s per step; autocast / fp32 = {ratio:.2f}")


if __name__ == "__main__":
    main()
