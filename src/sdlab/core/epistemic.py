"""Epistemic verbalization: the study's lexicon, its counts and densities, and per-token masks.

Two counting modes. "paper" reproduces the study exactly: per word `text.lower().count(word)`,
so substrings count ("checking", "Wait", "seemsseems" twice). "word" counts whole words only,
case-insensitively, for readers who want to see how much the substring rule inflates counts.
`token_marker_mask` says which tokens of a response carry a (paper-mode) marker, to split
per-token divergences into marker vs other tokens; `token_marker_occurrences` also says which
occurrence, to read the split per marker occurrence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

MARKERS = ("wait", "hmm", "perhaps", "maybe", "actually", "alternatively", "seems", "might", "likely", "check")
MODES = ("paper", "word")

_WORD_PATTERNS = {word: re.compile(rf"\b{word}\b", re.IGNORECASE) for word in MARKERS}


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown marker counting mode {mode!r}; use one of {', '.join(MODES)}")


def marker_breakdown(text: str, mode: str = "paper") -> dict[str, int]:
    """Occurrences of each marker word in `text`."""
    _check_mode(mode)
    if mode == "paper":
        lowered = text.lower()
        return {word: lowered.count(word) for word in MARKERS}
    return {word: len(pattern.findall(text)) for word, pattern in _WORD_PATTERNS.items()}


def count_markers(text: str, mode: str = "paper") -> int:
    """Total marker occurrences in `text` (the study's per-response epistemic word count)."""
    return sum(marker_breakdown(text, mode).values())


def markers_per_1k_tokens(text: str, num_tokens: int, mode: str = "paper") -> float:
    """Marker density, comparable across responses of different lengths."""
    if num_tokens <= 0:
        raise ValueError(f"num_tokens must be positive to compute a density, got {num_tokens}")
    return 1000.0 * count_markers(text, mode) / num_tokens


# ---------------------------------------------------------------- per-token masks


def _decode(tokenizer: Any, ids: list[int]) -> str:
    # Keep special tokens and the raw spacing so that pieces concatenate to the full decode.
    if hasattr(tokenizer, "convert_ids_to_tokens"):  # transformers tokenizer
        return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return tokenizer.decode(ids, skip_special_tokens=False)  # tokenizers.Tokenizer


def token_spans(token_ids: Sequence[int], tokenizer: Any) -> tuple[str, list[tuple[int, int]]]:
    """The decoded response and each token's [start, end) character span in it.

    Incremental detokenization (as in vLLM): each step decodes a short window starting a token
    or two back, so byte-level BPE pieces of a word and sentencepiece's stripped leading space
    come out right, in O(n) decodes of tiny windows instead of O(n^2) prefix decodes. Tokens
    that end inside a multi-byte character share the span of the token that completes it.
    A fast tokenizer whose re-encoding of the decoded text gives back the same ids skips all
    that and uses its offsets (one decode, one encode)."""
    token_ids = list(token_ids)
    if getattr(tokenizer, "is_fast", False):
        text = _decode(tokenizer, token_ids)
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if encoding["input_ids"] == token_ids:
            return text, [(start, end) for start, end in encoding["offset_mapping"]]
    parts: list[str] = []
    spans = [(0, 0)] * len(token_ids)
    position = prefix_offset = read_offset = 0
    waiting: list[int] = []  # tokens whose bytes do not yet make a whole character
    for index in range(len(token_ids)):
        prefix_text = _decode(tokenizer, token_ids[prefix_offset:read_offset])
        new_text = _decode(tokenizer, token_ids[prefix_offset : index + 1])
        waiting.append(index)
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            delta = new_text[len(prefix_text) :]
            for token in waiting:
                spans[token] = (position, position + len(delta))
            parts.append(delta)
            position += len(delta)
            waiting = []
            prefix_offset, read_offset = read_offset, index + 1
    for token in waiting:  # trailing bytes that never completed a character
        spans[token] = (position, position)
    return "".join(parts), spans


def _same_length_lower(text: str) -> str:
    """Lower-case without moving offsets (str.lower turns "İ" into two characters)."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(char.lower() if len(char.lower()) == 1 else char for char in text)


def token_marker_occurrences(tokens: Sequence[int] | Sequence[str] | Any, tokenizer: Any = None) -> list[int]:
    """One int per token: the index (0, 1, ... in text order) of the marker occurrence (paper mode:
    substrings, case-insensitive) the token's text overlaps, or -1. A marker is often several BPE
    pieces; this groups them, so a divergence can be read per occurrence (first piece, or summed
    over its pieces) as well as per sub-token.

    `tokens` are token ids with their `tokenizer` (a tensor works too), tokenizer token strings
    with their tokenizer, or, without a tokenizer, each token's decoded text piece."""
    if hasattr(tokens, "tolist"):
        tokens = tokens.tolist()
    tokens = list(tokens)
    if not tokens:
        return []
    if isinstance(tokens[0], str) and tokenizer is None:
        spans, position = [], 0
        for piece in tokens:
            spans.append((position, position + len(piece)))
            position += len(piece)
        text = "".join(tokens)
    elif tokenizer is None:
        raise ValueError("token_marker_occurrences: token ids need their tokenizer to be decoded")
    else:
        if isinstance(tokens[0], str):
            tokens = tokenizer.convert_tokens_to_ids(tokens)
        text, spans = token_spans(tokens, tokenizer)
    text = _same_length_lower(text)

    found = sorted((start, start + len(word)) for word in MARKERS for start in _find_all(text, word))
    owner = [-1] * len(text)  # the occurrence covering each character (the earlier one where two overlap)
    for index, (start, end) in enumerate(found):
        for offset in range(start, end):
            if owner[offset] < 0:
                owner[offset] = index
    result = []
    for start, end in spans:
        covering = [owner[offset] for offset in range(start, end) if owner[offset] >= 0]
        result.append(min(covering) if covering else -1)
    return result


def _find_all(text: str, word: str) -> list[int]:
    """Start offsets of `word` in `text`, non-overlapping (as str.count counts them)."""
    starts, start = [], text.find(word)
    while start >= 0:
        starts.append(start)
        start = text.find(word, start + len(word))
    return starts


def token_marker_mask(tokens: Sequence[int] | Sequence[str] | Any, tokenizer: Any = None) -> list[bool]:
    """One bool per token: True where the token's text overlaps a marker occurrence (paper mode:
    substrings, case-insensitive) in the concatenated response text (`token_marker_occurrences`)."""
    return [occurrence >= 0 for occurrence in token_marker_occurrences(tokens, tokenizer)]
