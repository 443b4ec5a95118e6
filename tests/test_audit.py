"""Teacher-input audit: alignment properties on a real SDPO batch, and broken inputs flagged."""

from __future__ import annotations

import json
import os

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
from sdlab.training.audit import audit_sample, render_audit  # noqa: E402
from sdlab.training.sdpo import SdlabSDPOConfig, SdlabSDPOTrainer  # noqa: E402

QUESTION = "What is two plus three? Put the answer in a box."
CONTEXT = "\n\nCorrect solution: 2 + 3 = 5, so \\boxed{5}\n\nCorrectly solve the original question."


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def render(tokenizer, content, **kwargs):
    return tokenizer.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=True, return_dict=True, **kwargs)["input_ids"]


def row(prompt, response, *, prompt_width, response_width, pad):
    """One TRL row: prompt left-padded to `prompt_width`, response right-padded to `response_width`."""
    ids = [pad] * (prompt_width - len(prompt)) + prompt + response + [pad] * (response_width - len(response))
    mask = [0] * (prompt_width - len(prompt)) + [1] * len(prompt) + [1] * len(response) + [0] * (response_width - len(response))
    return ids, mask


def pair(tokenizer, *, student_prompt=None, teacher_prompt=None, response=None, teacher_response=None, loss=None, pad=None, width=8):
    pad = tokenizer.pad_token_id if pad is None else pad
    student_prompt = student_prompt or render(tokenizer, QUESTION)
    teacher_prompt = teacher_prompt or render(tokenizer, QUESTION + CONTEXT)
    response = response or tokenizer("so \\boxed{5}", add_special_tokens=False)["input_ids"][:5] + [tokenizer.eos_token_id]
    student_ids, student_mask = row(student_prompt, response, prompt_width=len(student_prompt) + 2, response_width=width, pad=pad)
    teacher_ids, teacher_mask = row(teacher_prompt, teacher_response or response, prompt_width=len(teacher_prompt) + 1, response_width=width, pad=pad)
    loss = loss or [1] * len(response) + [0] * (width - len(response))
    return audit_sample(
        tokenizer, student_ids=student_ids, student_mask=student_mask, teacher_ids=teacher_ids, teacher_mask=teacher_mask,
        loss_mask=loss, eos_token_ids=[tokenizer.eos_token_id], question=QUESTION,
    )


def test_a_well_formed_pair_passes(tokenizer):
    record = pair(tokenizer)
    assert record["ok"], record["problems"]
    assert all(record["checks"][name] for name in ("response_aligned", "eos_present", "eos_in_loss", "question_intact_teacher", "think_boundary_same"))
    assert record["context"].startswith("\n\nCorrect solution:") and record["tokens"][-1]["eos"]
    assert "OK" in render_audit({**record, "step": 0, "sample": 0}).splitlines()[0]


def test_eos_learned_when_pad_is_eos(tokenizer):
    record = pair(tokenizer, pad=tokenizer.eos_token_id)
    assert record["ok"] and record["checks"]["eos_in_loss"], record["problems"]


def test_cut_question_is_flagged(tokenizer):
    teacher_prompt = render(tokenizer, QUESTION + CONTEXT)[12:]  # TRL's "keep the last tokens" cut
    record = pair(tokenizer, teacher_prompt=teacher_prompt)
    assert record["problems"] == ["question_intact_teacher"]
    assert "question_intact_teacher=FAIL" in render_audit(record)


def test_missing_eos_and_eos_outside_the_loss_are_flagged(tokenizer):
    no_eos = tokenizer("so \\boxed{5}", add_special_tokens=False)["input_ids"][:5]
    assert pair(tokenizer, response=no_eos)["problems"] == ["eos_present"]
    assert pair(tokenizer, loss=[1, 1, 1, 1, 1, 0, 0, 0])["problems"] == ["eos_in_loss"]


def test_shifted_response_and_different_think_prefill_are_flagged(tokenizer):
    response = tokenizer("so \\boxed{5}", add_special_tokens=False)["input_ids"][:5] + [tokenizer.eos_token_id]
    assert "response_aligned" in pair(tokenizer, response=response, teacher_response=response[1:])["problems"]
    nothink = render(tokenizer, QUESTION + CONTEXT, enable_thinking=False)
    assert pair(tokenizer, teacher_prompt=nothink)["problems"] == ["think_boundary_same"]


def test_truncated_response_is_not_an_error(tokenizer):
    record = pair(tokenizer, response=tokenizer("so the answer is", add_special_tokens=False)["input_ids"][:4], width=4, loss=[1, 1, 1, 1])
    assert record["ok"] and record["truncated"] and record["checks"]["eos_present"] is None


def test_real_trainer_batch_is_aligned(tiny_model_dir, tmp_path, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    vocab = model.config.vocab_size
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, *range(1, vocab, 3)]  # many replies end early, with an EOS

    def reward(prompts, completions, completion_ids=None, **kwargs):
        return [float(ids[0] % 2) for ids in completion_ids]

    args = SdlabSDPOConfig(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False, gradient_checkpointing=False,
        per_device_train_batch_size=8, num_generations=8, max_completion_length=8, max_steps=1, show_teacher=8, audit_dir=str(tmp_path / "run"),
    )
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": QUESTION}], "answer": "5"}])
    trainer = SdlabSDPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.model.train()
    batch = trainer._prepare_training_batch([data[0]] * 8)
    assert batch["self_distillation_mask"].sum() > 0
    records = [json.loads(line) for line in (tmp_path / "run" / "teacher_audit.jsonl").read_text().splitlines()]
    assert len(records) == 8
    assert all(r["ok"] for r in records), [r["problems"] for r in records]
    assert all(r["checks"]["response_aligned"] and r["checks"]["think_boundary_same"] and r["checks"]["question_intact_student"] for r in records)
    active_ended = [r for r in records if r["active"] and r["checks"]["eos_present"]]
    assert active_ended and all(r["checks"]["eos_in_loss"] for r in active_ended)
    assert all(QUESTION in r["teacher_prompt"] for r in records if r["active"])
    assert torch.equal(batch["teacher_input_ids"][:, -batch["completion_ids"].size(1) :], batch["completion_ids"])
