"""Benchmark (c): peak memory and time of the top-k (100) + tail divergence vs the full-vocabulary one.

    .venv/bin/python bench/topk_vs_full_memory.py                  # V = 151,936, 1,024 response tokens (fits a 24 GiB machine)
    .venv/bin/python bench/topk_vs_full_memory.py --tokens 4096    # the study's length: ~25 GiB for the plain full variant alone

Each variant runs in a fresh process on random student logits (requiring grad) and teacher
logits of shape [tokens, V], float32: forward + backward of the mean JSD (alpha 0.5).
Working memory = peak RSS minus RSS once the inputs exist (on CUDA: peak allocated minus
allocated). It includes the [tokens, V] gradient of the student logits that every variant
must produce. Every term scales with tokens x V, so the ratios do not depend on the length.

    full          sdlab.core.losses.full_vocab_divergence (plain autograd, as TRL's full_logits)
    full_chunked  sdlab.core.losses.chunked_full_vocab_divergence (checkpointed chunks of --chunk tokens)
    topk_trl      TRL's compute_topk_self_distillation_loss (top-100 + tail, plain autograd)
    topk          sdlab.core.losses.topk_tail_divergence (top-100 + tail, one-buffer backward)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

VARIANTS = ("full", "full_chunked", "topk_trl", "topk")


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(variant: str, tokens: int, vocab: int, k: int, device: str, chunk: int) -> dict:
    os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"
    import torch

    from sdlab.core import losses

    torch.manual_seed(0)
    student = torch.randn(tokens, vocab, device=device).mul_(3).requires_grad_()
    teacher = torch.randn(tokens, vocab, device=device).mul_(3)
    functions = {
        "full": lambda: losses.full_vocab_divergence(student, teacher, alpha=0.5),
        "full_chunked": lambda: losses.chunked_full_vocab_divergence(student, teacher, alpha=0.5, chunk_tokens=chunk),
        "topk": lambda: losses.topk_tail_divergence(student, teacher, k=k, alpha=0.5),
        "topk_trl": lambda: __import__("trl.experimental.sdpo.loss_utils", fromlist=["x"]).compute_topk_self_distillation_loss(
            student, teacher, distillation_topk=k, distillation_alpha=0.5, distillation_add_tail=True
        ),
    }
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = rss_bytes()
    started = time.perf_counter()
    functions[variant]().mean().backward()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"variant": variant, "seconds": time.perf_counter() - started, "working_bytes": peak - base, "input_bytes": 2 * tokens * vocab * 4}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--chunk", type=int, default=256, help="tokens per checkpointed chunk (full_chunked)")
    parser.add_argument("--child", choices=VARIANTS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.tokens, args.vocab, args.k, args.device, args.chunk)))
        return
    results = {}
    for variant in VARIANTS:
        command = [sys.executable, __file__, "--child", variant, "--tokens", str(args.tokens), "--vocab", str(args.vocab), "--k", str(args.k), "--device", args.device, "--chunk", str(args.chunk)]
        results[variant] = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    full = results["full"]
    print(f"tokens={args.tokens} vocab={args.vocab} k={args.k} device={args.device}; inputs {full['input_bytes'] / 2**30:.2f} GiB")
    print(f"{'variant':<14}{'working GiB':>12}{'vs full':>9}{'seconds':>9}{'vs full':>9}")
    for variant, r in results.items():
        print(f"{variant:<14}{r['working_bytes'] / 2**30:>12.2f}{r['working_bytes'] / full['working_bytes']:>9.3f}{r['seconds']:>9.2f}{r['seconds'] / full['seconds']:>9.3f}")


if __name__ == "__main__":
    main()
