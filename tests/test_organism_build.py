"""Organism build on the minimal size: saved like a hub model, cached, reproducible by seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from sdlab.organism.build import BUILD_FILE, SIZES, bf16_is_native, build_organism, default_organism_dir, make_model, pack_tokens, size_spec, train_step, trained_window


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_organism(tmp_path_factory.mktemp("organism") / "a", size="test", seed=0, show_progress=False, measure=False)


def test_saved_directory_loads_like_a_hub_model(built: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(built)
    tokenizer = AutoTokenizer.from_pretrained(built)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>" and tokenizer.eos_token_id != tokenizer.pad_token_id
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    card = ModelCard.load(built / "README.md")
    assert card.data.library_name == "transformers" and "model-organism" in card.data.tags
    assert card.text.lstrip().startswith("# sdlab model organism")
    assert "## Health\n\n(not judged" in (built / "README.md").read_text()  # built with measure=False
    assert json.loads((built / BUILD_FILE).read_text())["size"] == "test"
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Solve (4*x + 9) mod 7 = 5 for x in 0..6."}], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    no_think = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert no_think.endswith("<think>\n\n</think>\n\n")
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    out = model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] > ids.shape[1]


def test_tokenizer_splits_digits_and_keeps_think_tags(built: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(built)
    text = "<think>\ntry x=12 (mod 13): 4*12=9, 9+19=2. 2!=3.\n</think>\n\nThe answer is \\boxed{10} (or 123)."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = [tokenizer.decode([i]) for i in ids]
    assert "<think>" in pieces and "</think>" in pieces
    assert {"12", "19", "10"} <= set(pieces)  # small numbers are single tokens
    assert all(piece.isdigit() or not any(ch.isdigit() for ch in piece) for piece in pieces)  # never glued to text
    assert tokenizer.decode(ids + [tokenizer.eos_token_id], skip_special_tokens=True) == text
    assert "\\boxed{" in pieces and "\\boxed{}" in tokenizer.convert_ids_to_tokens(tokenizer("within \\boxed{}.", add_special_tokens=False)["input_ids"])
    assert all("\n" not in piece or piece.strip("\n") == "" for piece in pieces)  # no token spans a line break


def test_auto_tokenizer_encodes_like_the_training_tokenizer(built: Path) -> None:
    """transformers 5 re-tokenizes some architectures' tokenizers with hard-coded pre-tokenizers
    (qwen2 among them); the organism's ids through AutoTokenizer must be its training ids."""
    from transformers import PreTrainedTokenizerFast

    from sdlab.organism.build import document_text
    from sdlab.organism.corpus import corpus_documents
    auto, raw = AutoTokenizer.from_pretrained(built), PreTrainedTokenizerFast.from_pretrained(built)
    for document in corpus_documents(40, seed=5):
        text = document_text(raw, document)
        assert auto(text, add_special_tokens=False)["input_ids"] == raw(text, add_special_tokens=False)["input_ids"]


def test_second_call_reuses_the_cache_and_force_rebuilds(built: Path) -> None:
    stamp = (built / "model.safetensors").stat().st_mtime_ns
    assert build_organism(built, size="test", seed=0, show_progress=False, measure=False) == built
    assert (built / "model.safetensors").stat().st_mtime_ns == stamp


def test_same_seed_same_weights_other_seed_other_weights(built: Path, tmp_path: Path) -> None:
    again = build_organism(tmp_path / "b", size="test", seed=0, show_progress=False, measure=False)
    other = build_organism(tmp_path / "c", size="test", seed=1, show_progress=False, measure=False)
    first, second, third = (load_file(d / "model.safetensors") for d in (built, again, other))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert (built / "tokenizer.json").read_text() == (again / "tokenizer.json").read_text()
    assert not all(torch.equal(first[k], third[k]) for k in first if k in third and first[k].shape == third[k].shape)


def test_default_directory_follows_sdlab_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SDLAB_HOME", str(tmp_path))
    assert default_organism_dir(size="tiny", seed=3) == tmp_path / "organism" / "tiny-seed3"


def test_the_build_ends_with_a_window_extension_phase(built: Path) -> None:
    """Main phase on short windows, then longer ones: the saved settings say how far the model has seen."""
    stats = json.loads((built / BUILD_FILE).read_text())
    size = size_spec("test")  # the default corpus's steps (version 11 trains twice the size's)
    assert stats["settings"]["steps"] == size.steps == 2 * SIZES["test"].steps
    assert stats["trained_tokens"] == size.steps * size.batch * size.seq_len + size.extend_steps * size.extend_batch * size.extend_seq_len
    assert trained_window(stats["settings"]) == size.extend_seq_len > size.seq_len
    assert trained_window({**stats["settings"], "extend_steps": 0}) == size.seq_len


def test_steps_run_in_bf16_only_where_the_cpu_has_it_and_the_build_says_which(built: Path) -> None:
    """Emulated bf16 made a step 10x dearer on an AVX2-only CPU; the precision changes the weights."""
    assert json.loads((built / BUILD_FILE).read_text())["precision"] == ("bf16 autocast" if bf16_is_native() else "fp32")
    tokenizer = AutoTokenizer.from_pretrained(built)
    batch = torch.randint(0, len(tokenizer), (2, 32), generator=torch.Generator().manual_seed(0))
    losses = []
    for bf16 in (False, True):
        model = make_model(SIZES["test"], tokenizer, seed=0)
        losses.append(train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), batch, batch, bf16=bf16))
    assert losses[0] != losses[1] and abs(losses[0] - losses[1]) < 0.05


def test_pack_tokens_cuts_the_stream_into_windows() -> None:
    windows = pack_tokens([[1, 2, 3], [4, 5], [6, 7, 8, 9]], seq_len=4)
    assert windows.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]


def test_copy_probe_scores_every_slot_as_first_and_as_second_check(built: Path) -> None:
    from sdlab.organism.measure import copy_probe

    scores = copy_probe(AutoModelForCausalLM.from_pretrained(built), AutoTokenizer.from_pretrained(built), n=3)
    assert set(scores) == {"first_check", "second_check"} and all(set(slots) == {"a", "b", "c"} for slots in scores.values())
    assert all(0 < p < 1 for slots in scores.values() for p in slots.values())
    assert scores["first_check"] != scores["second_check"]  # the check above changes what the model sees


def test_distance_probe_scores_the_same_responses_behind_longer_contexts(built: Path) -> None:
    from sdlab.organism.measure import distance_probe

    model, tokenizer = AutoModelForCausalLM.from_pretrained(built), AutoTokenizer.from_pretrained(built)
    losses = distance_probe(model, tokenizer, n=3, distances=(0, 64, 300))
    assert list(losses) == [0, 64, 300] and all(0 < loss < 10 for loss in losses.values())
    assert len(set(losses.values())) == 3  # what comes before changes the loss of the same tokens
    untrained = distance_probe(AutoModelForCausalLM.from_config(model.config), tokenizer, n=3, distances=(0,))
    assert losses[0] < untrained[0]  # the build learned something the probe can see


def test_a_build_judges_its_abilities_and_its_card_names_what_it_lacks(tmp_path: Path) -> None:
    """A 20-step model cannot check anything: the build must say so, in build.json and the card."""
    built = build_organism(tmp_path / "measured", size="test", seed=0, show_progress=False)
    missing = json.loads((built / BUILD_FILE).read_text())["missing_abilities"]
    assert [m.split(":")[0] for m in missing] == [
        "the lookup facts of a check", "the copy of the question's equation into a check",
        "the comparison of a check's value with its target", "solving in-distribution problems without a context",
    ]
    card = (built / "README.md").read_text()
    assert "This draw **lacks**" in card and all(f"- {m}" in card for m in missing)
