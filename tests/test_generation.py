"""Generation on the tiny random-weight model: shapes, EOS handling, seeds, prompt rendering, loading errors."""

import logging
import shutil

import pytest
import torch

from sdlab import SdlabError
from sdlab.evaluation.generation import (
    Completion,
    SamplingParams,
    TransformersGenerator,
    kv_cache_for,
    load_model_and_tokenizer,
    make_generator,
    render_prompt,
    resolve_backend,
    vllm_available,
)

QUESTIONS = [[{"role": "user", "content": f"What is {a} + {a}? Put the answer in \\boxed{{}}."}] for a in range(5)]


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model_and_tokenizer(tiny_model_dir)


def test_load_gives_float32_cpu_eval_model_with_left_padding(loaded):
    model, tokenizer = loaded
    assert model.dtype == torch.float32 and model.device.type == "cpu" and not model.training
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_n_completions_per_prompt_in_batches(loaded):
    model, tokenizer = loaded
    generator = TransformersGenerator(model, tokenizer, batch_size=2)
    results = generator.generate(QUESTIONS, SamplingParams(n=3, max_new_tokens=6, seed=0))
    assert [len(group) for group in results] == [3] * len(QUESTIONS)
    for completion in (c for group in results for c in group):
        assert isinstance(completion, Completion)
        assert 1 <= completion.num_tokens == len(completion.token_ids) <= 6
        assert completion.finished == (completion.token_ids[-1] == tokenizer.eos_token_id)
        assert completion.text == tokenizer.decode(completion.token_ids, skip_special_tokens=True)


def test_seed_makes_sampling_reproducible(loaded):
    generator = make_generator(*loaded, backend="transformers")
    params = SamplingParams(n=4, max_new_tokens=8, seed=7, temperature=1.0, top_k=0, top_p=1.0)
    first = generator.generate(QUESTIONS[:2], params)
    assert generator.generate(QUESTIONS[:2], params) == first
    other = generator.generate(QUESTIONS[:2], SamplingParams(n=4, max_new_tokens=8, seed=8, temperature=1.0, top_k=0, top_p=1.0))
    assert other != first
    assert len({tuple(c.token_ids) for c in first[0]}) > 1  # samples within a prompt differ


def test_static_cache_on_cpu_samples_the_same_tokens_as_the_dynamic_one(loaded, monkeypatch):
    """The CPU generator preallocates its KV cache for speed; that must not change a sample."""
    import sdlab.evaluation.generation

    model, _ = loaded
    assert kv_cache_for(model) == "static"
    params = SamplingParams(n=4, max_new_tokens=24, seed=3, temperature=1.0, top_k=0, top_p=1.0)
    static = make_generator(*loaded, backend="transformers", batch_size=2).generate(QUESTIONS, params)
    monkeypatch.setattr(sdlab.evaluation.generation, "kv_cache_for", lambda model: None)
    dynamic = make_generator(*loaded, backend="transformers", batch_size=2).generate(QUESTIONS, params)
    assert [[c.token_ids for c in g] for g in static] == [[c.token_ids for c in g] for g in dynamic]
    assert any(c.num_tokens > 8 for g in static for c in g)  # long enough for the cache to matter


def test_greedy_returns_n_identical_copies(loaded):
    generator = make_generator(*loaded, backend="transformers")
    results = generator.generate(QUESTIONS[:2], SamplingParams(temperature=0, n=3, max_new_tokens=5))
    for group in results:
        assert len(group) == 3 and group[0] == group[1] == group[2]
        assert not group[0].finished and group[0].num_tokens == 5


def test_stops_at_any_eos_id_and_strips_the_padding_after_it(tiny_model_dir):
    model, tokenizer = load_model_and_tokenizer(tiny_model_dir)  # own copy: its EOS list is changed
    # A fixed seed and batch replay the same tokens; finished rows keep drawing (then padded),
    # so ending one row early does not change the other's draws.
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=6, seed=0)
    prompts = QUESTIONS[:2]
    first, second = (group[0].token_ids for group in TransformersGenerator(model, tokenizer).generate(prompts, params))
    assert tokenizer.eos_token_id not in first + second
    stop = next(token for token in first if token not in second)
    # Qwen models list several EOS ids in generation_config; any of them ends a reply.
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, stop]
    ended, running = (group[0] for group in TransformersGenerator(model, tokenizer).generate(prompts, params))
    assert ended.finished and ended.token_ids == first[: first.index(stop) + 1]  # padding after it is gone
    assert not running.finished and running.token_ids == second and running.num_tokens == 6


def test_generation_leaves_the_model_reusable_in_its_mode(loaded):
    model, tokenizer = loaded
    model.train()
    try:
        make_generator(model, tokenizer, backend="transformers").generate(QUESTIONS[:1], SamplingParams(max_new_tokens=2, seed=0))
        assert model.training
    finally:
        model.eval()
    ids = tokenizer("1 + 1 = 2", return_tensors="pt").input_ids
    assert model(ids).logits.shape == (1, ids.shape[1], model.config.vocab_size)


def test_rendered_prompt_strings_are_accepted(loaded):
    model, tokenizer = loaded
    text = render_prompt(tokenizer, QUESTIONS[0])
    generator = make_generator(model, tokenizer, backend="transformers")
    params = SamplingParams(max_new_tokens=4, seed=3)
    assert generator.generate([text], params) == generator.generate([QUESTIONS[0]], params)


def test_thinking_switch_reaches_the_chat_template(loaded):
    _, tokenizer = loaded
    default = render_prompt(tokenizer, QUESTIONS[0])
    assert default.endswith("<|im_start|>assistant\n")
    assert render_prompt(tokenizer, QUESTIONS[0], enable_thinking=True) == default
    assert render_prompt(tokenizer, QUESTIONS[0], enable_thinking=False) == default + "<think>\n\n</think>\n\n"


def test_llama_variant_generates(tiny_llama_dir):
    generator = make_generator(str(tiny_llama_dir), backend="transformers")
    results = generator.generate(QUESTIONS[:2], SamplingParams(n=2, max_new_tokens=4, seed=0), enable_thinking=False)
    assert [len(group) for group in results] == [2, 2]


def test_tokenizer_without_chat_template_is_a_clear_error(loaded):
    _, tokenizer = loaded
    template, tokenizer.chat_template = tokenizer.chat_template, None
    try:
        with pytest.raises(SdlabError, match="no chat template"):
            render_prompt(tokenizer, QUESTIONS[0])
    finally:
        tokenizer.chat_template = template


def test_loading_errors_name_what_is_missing(tiny_model_dir, tmp_path):
    with pytest.raises(SdlabError, match="not found"):
        load_model_and_tokenizer(tmp_path / "nowhere")
    no_tokenizer = tmp_path / "no_tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, no_tokenizer)
    with pytest.raises(SdlabError, match="missing a tokenizer"):
        load_model_and_tokenizer(no_tokenizer)
    no_weights = tmp_path / "no_weights"
    shutil.copytree(tiny_model_dir, no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(SdlabError, match=r"missing weights"):
        load_model_and_tokenizer(no_weights)


def test_missing_pad_token_falls_back_to_eos_with_a_warning(tiny_model_dir, tmp_path, caplog):
    from transformers import AutoTokenizer

    copy = tmp_path / "no_pad"
    shutil.copytree(tiny_model_dir, copy)
    tokenizer = AutoTokenizer.from_pretrained(copy)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(copy)
    with caplog.at_level(logging.WARNING, logger="sdlab.evaluation.generation"):
        _, loaded_tokenizer = load_model_and_tokenizer(copy)
    assert loaded_tokenizer.pad_token_id == loaded_tokenizer.eos_token_id
    assert "no pad token" in caplog.text


def test_backend_choice():
    assert resolve_backend("transformers") == "transformers"
    assert resolve_backend("auto") == ("vllm" if vllm_available() else "transformers")
    with pytest.raises(SdlabError, match="not one of"):
        resolve_backend("tgi")
    if not vllm_available():
        with pytest.raises(SdlabError, match="needs a CUDA GPU and vLLM"):
            resolve_backend("vllm")


@pytest.mark.gpu
def test_vllm_backend_matches_the_interface(tiny_model_dir):
    if not vllm_available():
        pytest.skip("needs vLLM and a CUDA device")
    generator = make_generator(str(tiny_model_dir), backend="vllm", gpu_memory_utilization=0.3)
    results = generator.generate(QUESTIONS[:3], SamplingParams(n=4, max_new_tokens=8, seed=0))
    assert [len(group) for group in results] == [4, 4, 4]
    for completion in (c for group in results for c in group):
        assert 1 <= completion.num_tokens == len(completion.token_ids) <= 8
        assert completion.finished or completion.num_tokens == 8
    greedy = generator.generate(QUESTIONS[:1], SamplingParams(temperature=0, n=2, max_new_tokens=4))
    assert greedy[0][0] == greedy[0][1]
