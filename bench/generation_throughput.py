"""Generation throughput (new tokens per second) of the transformers backend.

    .venv/bin/python bench/generation_throughput.py                     # tiny random model
    .venv/bin/python bench/generation_throughput.py --threads 1          # what the tests use
    .venv/bin/python bench/generation_throughput.py --model PATH --prompts 16 --k 8
    .venv/bin/python bench/generation_throughput.py --model organism \
        --prompts 16 --k 4 --max-new-tokens 256 --batch-size 16 --threads 2 --caches

--caches times the CPU's preallocated KV cache against transformers' dynamic one, alternating
in one process, and prints their ratio and whether every sampled token matched.

Without --model it builds the tests' tiny Qwen2 model in a temporary directory. A random
model rarely emits EOS, so every reply runs to --max-new-tokens: the count is exact.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sdlab.evaluation.generation  # noqa: E402
from sdlab.evaluation.generation import SamplingParams, load_model_and_tokenizer, make_generator  # noqa: E402
from sdlab.providers import resolve_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model directory (default: build the tiny test model)")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--k", type=int, default=4, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--caches", action="store_true", help="compare the static KV cache (sdlab's CPU choice) with the dynamic one")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        path = resolve_model(args.model) if args.model else None  # `organism`: the shipped one
        if path is None:
            from tests.tiny import build_tiny_model

            path = build_tiny_model(tmp)
        model, tokenizer = load_model_and_tokenizer(path)
        generator = make_generator(model, tokenizer, backend="transformers", batch_size=args.batch_size)
        prompts = [[{"role": "user", "content": f"What is {i} + {i}? Put the answer in \\boxed{{}}."}] for i in range(args.prompts)]
        params = SamplingParams(n=args.k, max_new_tokens=args.max_new_tokens, seed=0)
        generator.generate(prompts[:1], SamplingParams(max_new_tokens=4, seed=0))  # warm-up
        caches = {"static": lambda model: "static", "dynamic": lambda model: None} if args.caches else {"sdlab's choice": sdlab.evaluation.generation.kv_cache_for}
        rates: dict[str, list[float]] = {name: [] for name in caches}
        samples: dict[str, list] = {}
        for _ in range(args.repeats):
            for name, choice in caches.items():  # alternating, so drift in machine load hits both
                sdlab.evaluation.generation.kv_cache_for = choice
                start = time.perf_counter()
                results = generator.generate(prompts, params)
                elapsed = time.perf_counter() - start
                rates[name].append(sum(c.num_tokens for group in results for c in group) / elapsed)
                samples[name] = [c.token_ids for group in results for c in group]
        print(f"model {path}: {args.prompts} prompts x {args.k} samples x <= {args.max_new_tokens} tokens, batch {args.batch_size}, torch threads {torch.get_num_threads()}")
        for name, values in rates.items():
            print(f"{name}: new tokens/s best {max(values):.0f}, median {median(values):.0f} over {args.repeats} runs")
        if args.caches:
            print(f"static / dynamic median throughput: {median(rates['static']) / median(rates['dynamic']):.2f}; same tokens: {samples['static'] == samples['dynamic']}")


if __name__ == "__main__":
    main()
