"""Probe scoring throughput as a ratio to a bare batched forward pass on the same batch.

    .venv/bin/python bench/probe_scoring.py                 # random Qwen2, about a minute on 2 CPU cores
    .venv/bin/python bench/probe_scoring.py --model PATH    # a real model (GPU if present)

`bare`: `model(input_ids, attention_mask)` on the right-padded, length-sorted batch (prompt +
response), full logits, nothing else. `score`: `sdlab.probe.scoring.score_responses` on the same
sequences: log-probs of the sampled tokens, plus (`--sampling`) their log-prob under the
temperature / top-k / top-p sampler. `pair`: one student and one teacher prompt per response
with the per-token divergence, against two bare passes. Ratio = bare time / scoring time
(goal >= 0.8: the bookkeeping costs at most a fifth of the forward pass), timed alternately.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdlab.probe.scoring import SamplingSpec, pad_batch, score_responses  # noqa: E402


def random_model(*, vocab: int, hidden: int, layers: int):
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers, num_attention_heads=8,
        num_key_value_heads=4, max_position_embeddings=4096, tie_word_embeddings=True, pad_token_id=0,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def ratio(reference, candidate, repeats: int) -> tuple[float, float]:
    """(best-of ratio, median of per-repeat ratios) of reference time / candidate time.

    The two are timed alternately, so a load change on a shared machine hits both; the
    best-of ratio compares the least-disturbed run of each."""
    reference(), candidate()  # warm-up
    pairs = []
    for _ in range(repeats):
        times = []
        for fn in (reference, candidate):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
        pairs.append(times)
    best = min(t for t, _ in pairs) / min(t for _, t in pairs)
    return best, statistics.median(t / u for t, u in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model directory (default: a random Qwen2, vocab 8192, hidden 256, 4 layers)")
    parser.add_argument("--responses", type=int, default=8, help="sequences in the batch (one scoring chunk)")
    parser.add_argument("--prompt-tokens", type=int, default=96)
    parser.add_argument("--response-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.model:
        from sdlab.evaluation.generation import load_model_and_tokenizer

        model, tokenizer = load_model_and_tokenizer(args.model)
        pad_id, vocab = tokenizer.pad_token_id, len(tokenizer)
    else:
        model, pad_id, vocab = random_model(vocab=8192, hidden=256, layers=4), 0, 8192
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(0)

    def lengths(mean: int) -> list[int]:
        return [int(x) for x in torch.randint(mean // 2, mean * 3 // 2, (args.responses,), generator=gen)]

    prompts = [torch.randint(1, vocab, (n,), generator=gen).tolist() for n in lengths(args.prompt_tokens)]
    teachers = [torch.randint(1, vocab, (n,), generator=gen).tolist() for n in lengths(2 * args.prompt_tokens)]
    responses = [torch.randint(1, vocab, (n,), generator=gen).tolist() for n in lengths(args.response_tokens)]
    order = sorted(range(args.responses), key=lambda i: len(responses[i]), reverse=True)
    student_batch = pad_batch([prompts[i] + responses[i] for i in order], pad_id=pad_id, device=device)
    teacher_batch = pad_batch([teachers[i] + responses[i] for i in order], pad_id=pad_id, device=device)
    common = dict(prompts=prompts, responses=responses, pad_id=pad_id, batch_size=args.responses)

    @torch.inference_mode()
    def bare(*batches):
        for ids, mask in batches:
            model(input_ids=ids, attention_mask=mask)

    cases = {
        "score": (lambda: bare(student_batch), lambda: score_responses(model, **common)),
        "score + sampling log q": (lambda: bare(student_batch), lambda: score_responses(model, sampling=SamplingSpec(), **common)),
        "student + teacher + divergence": (lambda: bare(student_batch, teacher_batch), lambda: score_responses(model, teacher_prompts=[teachers], **common)),
    }
    tokens = sum(len(p) + len(r) for p, r in zip(prompts, responses))
    print(f"device {device}, batch {args.responses} x ~{args.prompt_tokens}+{args.response_tokens} tokens, vocab {vocab}, {tokens} tokens per pass")
    for name, (reference, candidate) in cases.items():
        best, median = ratio(reference, candidate, args.repeats)
        print(f"{name:32s} throughput / bare forward: {best:.2f} (best of {args.repeats}), {median:.2f} (median of per-repeat ratios)")


if __name__ == "__main__":
    main()
