"""The organism's tokenizer: byte-level BPE, one token per small number, Qwen3-style chat.

Every integer 0..99 is one (non-special) token and longer numbers split into digits. The
organism's checks are modular lookups (`4*6=2` mod 11), not digit-wise algorithms, so
whole-number tokens make each fact a single next-token prediction and copying a number
from the question a single-token copy; measured, a digit-level tokenizer left the
default-size organism unable to copy the question's numbers within the CPU budget.
`<think>` and `</think>` are ordinary (non-special) added tokens, so
`decode(skip_special_tokens=True)` keeps them, as TRL's SDPO does when it decodes a
demonstration. End of turn (`<|im_end|>`, eos) and padding (`<|endoftext|>`) are distinct.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
THINK_TOKENS = ("<think>", "</think>")
NUMBER_TOKENS = tuple(str(n) for n in range(100))
# `\\boxed{` is one token wherever it appears, so an answer written after it in a context is
# taken over by a one-token copy; the instruction's empty `\\boxed{}` is a token of its own.
BOXED_TOKENS = ("\\boxed{}", "\\boxed{")

# Qwen3-style: the model writes its own <think> block; enable_thinking=false pre-fills an
# empty one so the model answers directly.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<|im_start|>assistant\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}{{ '<think>\n\n</think>\n\n' }}{%- endif -%}"
    "{%- endif -%}"
)


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Train byte-level BPE on `texts` and wrap it for transformers."""
    tokenizer = Tokenizer(models.BPE())
    # BPE may merge across words ("wait, that fails."), never into a number: a number is
    # the same token wherever it appears, so copying it from the question or from the
    # previous lookup is an identity copy. (The model is a Llama: transformers 5 loads a
    # llama directory's tokenizer.json as saved, while a qwen2 one would be re-tokenized by
    # Qwen2Tokenizer's hard-coded pre-tokenizer; a test checks AutoTokenizer's ids.)
    # No token crosses a line break either: a check's verdict ("? no.") and the doubt that
    # opens the next line ("wait, that fails. ") are predicted as tokens of their own.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\d"), behavior="isolated"),
        pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS + BOXED_TOKENS + NUMBER_TOKENS])
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, pad_token=PAD, bos_token=None, unk_token=None, padding_side="left")
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def render_chat(tokenizer: PreTrainedTokenizerFast, messages: list[dict[str, str]], response: str | None = None) -> str:
    """The prompt (with generation prompt), plus the response and end of turn when given."""
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return prompt if response is None else f"{prompt}{response}{EOS}\n"
