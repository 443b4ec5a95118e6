"""Tiny random-weight chat models for tests and benches (no hub, about a second to build).

    from tests.tiny import build_tiny_model
    path = build_tiny_model("/tmp/tiny")        # Qwen2ForCausalLM + tokenizer, safetensors

The tokenizer is a byte-level BPE trained on a few hundred math-like lines, so any text
(LaTeX, unicode) encodes without unknown tokens. Its chat template mimics Qwen3's:
`<|im_start|>role\\n...<|im_end|>`, and with `enable_thinking=False` the generation prompt
pre-fills an empty `<think>\\n\\n</think>\\n\\n`. `<think>`/`</think>` are normal added tokens,
so `decode(..., skip_special_tokens=True)` keeps them (TRL's SDPO decodes demonstrations so).
pad, eos and bos are three distinct tokens: pad must never be mistaken for the end of a reply.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

BOS, EOS, PAD = "<|bos|>", "<|im_end|>", "<|pad|>"
IM_START = "<|im_start|>"
# Qwen2Tokenizer (what AutoTokenizer picks for a qwen2 config) adds `<|endoftext|>` as its
# unknown token when missing, which would grow the vocabulary past the embedding matrix.
SPECIAL_TOKENS = [BOS, EOS, PAD, IM_START, "<|endoftext|>"]
THINK_TOKENS = ["<think>", "</think>"]
EPISTEMIC_WORDS = ["wait", "hmm", "perhaps", "maybe", "actually", "alternatively", "seems", "might", "likely", "check"]

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}"
    "{{ '<think>\\n\\n</think>\\n\\n' }}"
    "{% endif %}"
    "{% endif %}"
)


def _corpus(n_lines: int = 400, seed: int = 0) -> list[str]:
    """Math-like lines with think blocks, boxed answers, digits and the epistemic words."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        word = rng.choice(EPISTEMIC_WORDS)
        op, value = rng.choice([("+", a + b), ("-", a - b), ("*", a * b)])
        lines.append(
            f"<think>\nWe need {a} {op} {b}. {word.capitalize()}, let me {rng.choice(EPISTEMIC_WORDS)} "
            f"the sum: $x = {value}$, so \\frac{{{a}}}{{{b + 1}}}.\n</think>\n\n"
            f"The answer is \\boxed{{{value}}}. Please reason step by step."
        )
    return lines


def build_tiny_tokenizer(path: str | Path, *, vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer and save it (with its chat template) to `path`."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=BOS, eos_token=EOS, pad_token=PAD)
    tokenizer.add_tokens(THINK_TOKENS)  # normal tokens: skip_special_tokens keeps them
    tokenizer.add_special_tokens({"additional_special_tokens": [IM_START]})
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(str(path))
    return tokenizer


def build_tiny_model(path: str | Path, arch: str = "qwen2", *, hidden_size: int = 64, num_layers: int = 2, seed: int = 0) -> Path:
    """Save a random-weight causal LM (`qwen2` or `llama`) plus the tiny tokenizer to `path`."""
    from transformers import LlamaConfig, Qwen2Config

    path = Path(path)
    tokenizer = build_tiny_tokenizer(path)
    config_cls = {"qwen2": Qwen2Config, "llama": LlamaConfig}[arch]
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(path), safe_serialization=True)
    return path


def half_the_groups_solvable(group_size: int, record: list[float] | None = None):
    """A 0/1 reward that leaves half the rollout groups with a success, for random-weight models.

    Rows arrive in group order; groups at even positions of each batch succeed on a rollout whose
    first token id is odd (about half their rollouts, so 1 - 2^-group_size of them hold a success),
    the others never do. SDPO then distils on about half the rows, as early in a real run.
    `record` receives each batch's fraction of groups with a success.
    """

    def half_the_groups_solvable(prompts, completions, completion_ids=None, **kwargs):
        rewards = [float(bool(ids) and ids[0] % 2 == 1 and (row // group_size) % 2 == 0) for row, ids in enumerate(completion_ids)]
        if record is not None:
            groups = [rewards[start : start + group_size] for start in range(0, len(rewards), group_size)]
            record.append(sum(max(group) for group in groups) / len(groups))
        return rewards

    return half_the_groups_solvable
