"""Marker counts (the study's substring rule and whole words) and per-token marker masks on real tokenizers."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from sdlab.core.epistemic import MARKERS, count_markers, marker_breakdown, markers_per_1k_tokens, token_marker_mask, token_marker_occurrences, token_spans

SENTENCES = [
    "Wait, maybe the answer is 7. Hmm, let me check it again.",
    "Perhaps we should actually try another way. Alternatively, it seems likely that x might be 3.",
    "The sum of 3 and 4 is 7, so the answer is \\boxed{7}.",
    "We compute the product first, then divide by two. Check the sum: it seems right.",
] * 5


def test_lexicon_is_the_studys():
    assert MARKERS == ("wait", "hmm", "perhaps", "maybe", "actually", "alternatively", "seems", "might", "likely", "check")


def test_paper_mode_counts_substrings_case_insensitively():
    text = "Wait... checking: it seemsseems unlikely. WAIT. Hmmm, maybe? Rechecked."
    # wait x2, check x2 (checking, Rechecked), seems x2, likely x1 (unlikely), hmm x1 (Hmmm), maybe x1
    assert count_markers(text) == 9
    assert count_markers(text, mode="paper") == sum(text.lower().count(word) for word in MARKERS)
    breakdown = marker_breakdown(text)
    assert breakdown["check"] == 2 and breakdown["seems"] == 2 and breakdown["perhaps"] == 0
    assert set(breakdown) == set(MARKERS)


def test_word_mode_counts_whole_words_only():
    text = "Wait... checking: it seemsseems unlikely. WAIT. Hmmm, maybe? Check, check-in."
    assert marker_breakdown(text, "word") == {**dict.fromkeys(MARKERS, 0), "wait": 2, "maybe": 1, "check": 2}
    assert count_markers(text, mode="word") == 5
    with pytest.raises(ValueError, match="unknown marker counting mode 'words'"):
        count_markers(text, mode="words")


def test_density_per_thousand_tokens():
    assert markers_per_1k_tokens("wait wait hmm", 300) == pytest.approx(10.0)
    assert markers_per_1k_tokens("nothing here", 50) == 0.0
    with pytest.raises(ValueError, match="num_tokens must be positive"):
        markers_per_1k_tokens("wait", 0)


# ---------------------------------------------------------------- token masks


@pytest.fixture(scope="module")
def byte_bpe() -> Tokenizer:
    """GPT-2/Qwen-style byte-level BPE trained here on a few sentences."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(SENTENCES, trainer=trainer)
    return tokenizer


@pytest.fixture(scope="module")
def metaspace_bpe() -> Tokenizer:
    """Sentencepiece/Llama-style: spaces become "▁" and the first token's space is dropped on decode."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>"], show_progress=False)
    tokenizer.train_from_iterator(SENTENCES, trainer=trainer)
    return tokenizer


def marked_text(ids: list[int], tokenizer, mask: list[bool]) -> list[str]:
    return [tokenizer.decode([token]) for token, flag in zip(ids, mask) if flag]


@pytest.mark.parametrize("kind", ["raw", "fast"])
def test_wait_maybe_marks_exactly_their_tokens(byte_bpe, kind):
    tokenizer = byte_bpe if kind == "raw" else PreTrainedTokenizerFast(tokenizer_object=byte_bpe)
    text = "Wait, maybe the answer is 7."
    ids = byte_bpe.encode(text).ids
    mask = token_marker_mask(ids, tokenizer)
    assert len(mask) == len(ids)
    covered = "".join(byte_bpe.decode([token]) for token, flag in zip(ids, mask) if flag)
    assert covered.replace(" ", "") == "Waitmaybe"
    # every unmarked token is free of marker letters of those words
    unmarked = "".join(byte_bpe.decode([token]) for token, flag in zip(ids, mask) if not flag)
    assert "Wait" not in unmarked and "maybe" not in unmarked
    assert token_marker_mask(torch.tensor(ids), tokenizer) == mask


def test_marker_split_across_tokens_marks_every_piece(byte_bpe):
    # A non-canonical tokenization, as sampling can produce: "maybe" spelled one byte per token.
    pieces = ["So", " m", "a", "y", "b", "e", " not", "."]
    ids = [token for piece in pieces for token in byte_bpe.encode(piece).ids]
    assert len(ids) >= len(pieces)
    mask = token_marker_mask(ids, byte_bpe)
    marked = "".join(byte_bpe.decode([token]) for token, flag in zip(ids, mask) if flag)
    assert marked == " maybe"
    assert not any(flag for token, flag in zip(ids, mask) if byte_bpe.decode([token]) in ("So", " not", "."))


def test_multibyte_characters_keep_offsets_aligned(byte_bpe):
    text = "数学 İst wait ünï maybe"
    ids = byte_bpe.encode(text).ids
    decoded, spans = token_spans(ids, byte_bpe)
    assert decoded == text
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    mask = token_marker_mask(ids, byte_bpe)
    marked = "".join(decoded[start:end] for (start, end), flag in zip(spans, mask) if flag)
    assert marked.replace(" ", "") == "waitmaybe"


def test_metaspace_tokenizer_spans_match_the_decode(metaspace_bpe):
    text = "Wait, maybe it seems right. Check the sum."
    ids = metaspace_bpe.encode(text).ids
    decoded, spans = token_spans(ids, metaspace_bpe)
    assert decoded == metaspace_bpe.decode(ids)
    mask = token_marker_mask(ids, metaspace_bpe)
    marked = "".join(decoded[start:end] for (start, end), flag in zip(spans, mask) if flag).replace(" ", "")
    # Metaspace splits on spaces only, so "Wait," is one token: it carries a marker, all of it is marked.
    assert marked == "Wait,maybeseemsCheck"


def test_token_strings_without_tokenizer_are_text_pieces():
    assert token_marker_mask(["The", " che", "ck", " is", " fine", ", wa", "it"]) == [False, True, True, False, False, True, True]
    assert token_marker_mask([]) == []
    with pytest.raises(ValueError, match="need their tokenizer"):
        token_marker_mask([1, 2, 3])


def test_marker_occurrences_group_the_pieces_of_each_marker():
    pieces = ["The", " che", "ck", " is", " fine", ", wa", "it", " wait"]
    assert token_marker_occurrences(pieces) == [-1, 0, 0, -1, -1, 1, 1, 2]
    assert token_marker_mask(pieces) == [o >= 0 for o in token_marker_occurrences(pieces)]
    assert token_marker_occurrences(["Maybe", "check"]) == [0, 1] and token_marker_occurrences([]) == []
