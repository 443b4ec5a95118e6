"""The shared tiny models load like hub models and keep the properties other tests rely on."""

from transformers import AutoModelForCausalLM, AutoTokenizer


def test_tiny_models_load_with_distinct_special_tokens(tiny_model_dir, tiny_llama_dir):
    for path, model_type in ((tiny_model_dir, "qwen2"), (tiny_llama_dir, "llama")):
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path)
        assert model.config.model_type == model_type
        assert model.config.vocab_size == len(tokenizer)
        assert len({tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id}) == 3
        ids = tokenizer("<think>\nwait</think>\n\n\\boxed{42}", add_special_tokens=False).input_ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == "<think>\nwait</think>\n\n\\boxed{42}"


def test_chat_template_prefills_empty_think_block_when_thinking_is_off(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [{"role": "user", "content": "1+1?"}]
    on = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    off = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert on.endswith("<|im_start|>assistant\n")
    assert off == on + "<think>\n\n</think>\n\n"
