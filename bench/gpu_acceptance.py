"""GPU acceptance run: GRPO and SDPO steps at the study's vocabulary and lengths, on one GPU, through `sdlab train`.

    .venv/bin/python bench/gpu_acceptance.py                 # one H100-class GPU, about 10 minutes (estimated)
    .venv/bin/python bench/gpu_acceptance.py --dry-run       # CPU: tiny model, no vLLM, a few tokens, seconds

What a team relies on, checked in one command:
- a randomly initialised Qwen3-shaped model of about 0.5B parameters (hidden 1024, 24 layers,
  tied embeddings) with the study's vocabulary of 151,936, built here (no hub); its tokenizer is a
  byte-level BPE whose vocabulary fills all 151,936 ids (bytes, byte pairs, byte triples), so any
  id vLLM samples from the random model decodes;
- `recipes/models/*`-style recipes written here (bf16, gradient checkpointing, micro-batches of 2,
  vLLM colocated, top-100 + tail distillation), run by `sdlab train`'s code (`sdlab.training.run.run_training`)
  under `accelerate launch`, one process per method: 4 prompts x 8 rollouts of 4,096 tokens (a random
  model never emits EOS, so every completion is 4,096 tokens), 4 steps, the first a warm-up;
- the reward (the one thing `sdlab train`'s math grader cannot give a random model) is
  `tests.tiny.half_the_groups_solvable`: groups at even positions of each batch succeed on a
  rollout whose first token id is odd (about half their rollouts), the others never do, so half
  the groups hold a success and SDPO distils on about half the rows, as early in a real run.
  The measured fraction is recorded;
- step time (median after the warm-up), peak GPU memory (PyTorch's peak allocation and the device's
  peak use, vLLM's KV cache included) and the SDPO/GRPO step-time ratio, printed and written to
  `<work>/gpu_acceptance.json`.
Time on one H100 (estimated, not yet measured): about 1.5 minutes per method to start (model, vLLM
engine, CUDA graphs) and 20-40 s per step, so 8-10 minutes in all. vLLM missing, or no GPU, is a
one-line error; --no-vllm generates with transformers instead (much slower at 4k tokens).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.tiny: the reward that leaves half the groups with a success
VOCAB = 151_936
ROLLOUTS = 8
QWEN3_05B = dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=8, head_dim=128)
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8)
PAD, BOS, EOS = "<|endoftext|>", "<|im_start|>", "<|im_end|>"


def build_tokenizer(path: Path, *, vocab_size: int = VOCAB):
    """A byte-level BPE with exactly `vocab_size` ids: 256 bytes, all byte pairs, then byte triples."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from sdlab.organism.tokenizer import CHAT_TEMPLATE, THINK_TOKENS

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    special = [PAD, BOS, EOS, *THINK_TOKENS]
    room = vocab_size - len(alphabet) - len(special)
    pairs = list(itertools.islice(itertools.product(alphabet, alphabet), room))
    merges = pairs + list(itertools.islice(((a + b, c) for a, b in pairs for c in alphabet), room - len(pairs)))
    vocab = {token: index for index, token in enumerate(alphabet + [a + b for a, b in merges])}
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    bpe.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=BOS, eos_token=EOS, pad_token=PAD)
    tokenizer.add_special_tokens({"additional_special_tokens": [BOS]})
    tokenizer.add_tokens(list(THINK_TOKENS))  # ordinary tokens, as in the organism and Qwen3
    tokenizer.chat_template = CHAT_TEMPLATE
    if len(tokenizer) != vocab_size:
        raise RuntimeError(f"the acceptance tokenizer has {len(tokenizer)} ids, not {vocab_size}")
    tokenizer.save_pretrained(str(path))
    return tokenizer


def build_model(path: Path, *, shape: dict, dtype: str) -> int:
    """Save a random Qwen3 of `shape` with the study's vocabulary and its tokenizer; returns its parameter count."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    tokenizer = build_tokenizer(path)
    config = Qwen3Config(
        vocab_size=VOCAB, max_position_embeddings=16384, tie_word_embeddings=True, rope_theta=1_000_000.0,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **shape,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    model.save_pretrained(str(path), safe_serialization=True)
    return sum(p.numel() for p in model.parameters())


def write_recipes(work: Path, model: Path, *, dry_run: bool, vllm: bool, steps: int, tokens: int) -> dict[str, Path]:
    """One `sdlab train` recipe per method, plus the problems file they train on."""
    import yaml

    problems = work / "problems.jsonl"
    problems.write_text("".join(json.dumps({"id": f"p{i}", "question": f"What is {i} times {i + 3}?", "answer": str(i * (i + 3))}) + "\n" for i in range(64)))
    runtime = (
        {"use_cpu": True, "bf16": False, "gradient_checkpointing": False, "threads": 1, "vllm": {"enabled": False}}
        if dry_run
        else {
            "use_cpu": False, "bf16": True, "gradient_checkpointing": True, "micro_batch": 2,
            "vllm": {"enabled": vllm, "mode": "colocate", "gpu_memory_utilization": 0.3, "max_model_length": 128 + tokens},
        }
    )
    recipes = {}
    for method in ("grpo", "sdpo"):
        recipe = {
            "method": method, "model": str(model), "output_dir": str(work / method), "seed": 0, "steps": steps, "lr": 1.0e-6,
            "batch": 2 if dry_run else 4, "rollouts": ROLLOUTS, "max_prompt_length": 128, "max_completion_length": tokens,
            "temperature": 1.0, "save_steps": 1000, "data": {"train": str(problems)}, "eval": {"every": 0},
            "runtime": runtime, "logging": {"report_to": "none", "samples_per_step": 0},
        }
        if method == "sdpo":  # the study's: fixed teacher, top-100 + tail, JSD 0.5, room for x + a whole sibling
            recipe["sdpo"] = {"context": "solution", "teacher": "fixed", "distillation": "topk", "topk": 100, "tail": True, "alpha": 0.5, "max_teacher_prompt_length": 128 + 2 * tokens}
        recipes[method] = work / f"{method}.yaml"
        recipes[method].write_text(yaml.safe_dump(recipe, sort_keys=False))
    return recipes


def train_one(recipe: Path, result: Path) -> None:
    """What `sdlab train <recipe>` does, with the acceptance reward, a step timer and GPU memory peaks."""
    import torch
    from transformers import TrainerCallback

    from sdlab.config.checks import load_train_config
    from sdlab.training.run import run_training
    from tests.tiny import half_the_groups_solvable

    cuda = torch.cuda.is_available()

    class Probe(TrainerCallback):
        def __init__(self):
            self.step_s, self.started, self.device_used = [], 0.0, 0

        def on_step_begin(self, *a, **k):
            self.started = time.perf_counter()

        def on_step_end(self, *a, **k):
            if cuda:
                torch.cuda.synchronize()
                free, total = torch.cuda.mem_get_info()
                self.device_used = max(self.device_used, total - free)
            self.step_s.append(time.perf_counter() - self.started)

    probe, fractions = Probe(), []
    config = load_train_config(recipe)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    summary = run_training(config, force=True, extra_callbacks=[probe], reward_funcs=half_the_groups_solvable(ROLLOUTS, fractions))
    gib = 2**30
    record = {
        "method": config.method, "steps": summary["steps"], "step_s": [round(s, 3) for s in probe.step_s],
        "median_step_s": round(statistics.median(probe.step_s[1:] or probe.step_s), 3),
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / gib, 2) if cuda else None,
        "peak_device_used_gib": round(probe.device_used / gib, 2) if cuda else None,
        "groups_with_success": round(statistics.mean(fractions), 3) if fractions else None,
        "response_tokens_mean": (summary.get("final") or {}).get("response_tokens_mean"),
    }
    if os.environ.get("RANK", "0") == "0":
        result.write_text(json.dumps(record))


def launch(recipe: Path, result: Path, *, dry_run: bool) -> dict:
    """GPU: `accelerate launch` one process (vLLM colocate needs the distributed setup it makes). Dry run: in this process."""
    if dry_run:
        train_one(recipe, result)
    else:
        command = [
            str(Path(sys.executable).parent / "accelerate"), "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "bf16",
            "--dynamo_backend", "no", str(Path(__file__).resolve()), "--train-one", str(recipe), "--result", str(result),
        ]
        subprocess.run(command, check=True, cwd=REPO)
    return json.loads(result.read_text())


def check_machine(*, dry_run: bool, vllm: bool) -> None:
    """One-line exits before any work: vLLM asked for but not installed, or no GPU."""
    import importlib.util

    import torch

    if dry_run:
        return
    if vllm and importlib.util.find_spec("vllm") is None:
        sys.exit("gpu_acceptance: vLLM is not installed (pip install 'sdlab[vllm]'); install it, pass --no-vllm to generate with transformers, or --dry-run for the CPU check")
    if not torch.cuda.is_available():
        sys.exit("gpu_acceptance: torch sees no CUDA device; run it on a GPU machine, or pass --dry-run for the CPU check")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU: a tiny model, no vLLM, 8-token completions, 2 steps")
    parser.add_argument("--no-vllm", action="store_true", help="generate with transformers instead of vLLM (GPU)")
    parser.add_argument("--work", type=Path, help="where the model, recipes, runs and gpu_acceptance.json go (default: a temporary directory)")
    parser.add_argument("--steps", type=int, help="steps per method, the first a warm-up (default 4; dry run 2)")
    parser.add_argument("--tokens", type=int, help="completion length (default 4096; dry run 8)")
    parser.add_argument("--train-one", type=Path, help=argparse.SUPPRESS)  # the worker accelerate launches
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    if args.train_one:
        train_one(args.train_one, args.result)
        return {}
    check_machine(dry_run=args.dry_run, vllm=not args.no_vllm)
    import torch

    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-acceptance-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    parameters = build_model(work / "model", shape=TINY if args.dry_run else QWEN3_05B, dtype="float32" if args.dry_run else "bfloat16")
    vllm = not (args.dry_run or args.no_vllm)
    recipes = write_recipes(work, work / "model", dry_run=args.dry_run, vllm=vllm, steps=args.steps or (2 if args.dry_run else 4), tokens=args.tokens or (8 if args.dry_run else 4096))
    runs = {method: launch(recipe, work / f"{method}.result.json", dry_run=args.dry_run) for method, recipe in recipes.items()}
    report = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() and not args.dry_run else "cpu (dry run)",
        "parameters": parameters, "vocab_size": VOCAB, "vllm": vllm, "runs": runs,
        "sdpo_over_grpo_step_time": round(runs["sdpo"]["median_step_s"] / runs["grpo"]["median_step_s"], 3),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    (work / "gpu_acceptance.json").write_text(json.dumps(report, indent=2))
    for method, run in runs.items():
        print(f"{method}: {run['median_step_s']:.2f} s/step (median after the warm-up), peak allocated {run['peak_allocated_gib']} GiB, device peak {run['peak_device_used_gib']} GiB, groups with a success {run['groups_with_success']}")
    print(f"SDPO / GRPO step time: {report['sdpo_over_grpo_step_time']:.3f}; {parameters / 1e9:.2f}B parameters on {report['device']}; {report['wall_s']:.0f} s; {work / 'gpu_acceptance.json'}")
    return report


if __name__ == "__main__":
    main()
