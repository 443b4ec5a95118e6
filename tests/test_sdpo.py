"""sdlab's SDPO subclass on a tiny random Qwen2: real training steps, and each fix shown against plain TRL."""

from __future__ import annotations

import os
from contextlib import contextmanager

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
from trl.experimental.sdpo import SDPOTrainer  # noqa: E402
from trl.experimental.sdpo.sdpo_trainer import DistillationLogits, SuccessfulRolloutTeacherContextBuilder  # noqa: E402

from sdlab import SdlabError  # noqa: E402
from sdlab.core.contexts import PROBE_TEMPLATE  # noqa: E402
from sdlab.core.io import read_jsonl  # noqa: E402
from sdlab.training.callbacks import EpistemicMonitor  # noqa: E402
from sdlab.training.grpo import math_reward  # noqa: E402
from sdlab.training.sdpo import CUT_MARK, SdlabSDPOConfig, SdlabSDPOTrainer, build_grpo_trainer, build_sdpo_trainer  # noqa: E402

TINY_ARGS = dict(per_device_train_batch_size=4, num_generations=4, max_completion_length=8, max_steps=2, learning_rate=1e-2, seed=0)


def odd_first_token(prompts, completions, completion_ids=None, **kwargs):
    """Deterministic 0/1 reward: about half the rollouts 'succeed', so teacher contexts get built."""
    return [float(ids[0] % 2) for ids in completion_ids]


def dataset(n=4):
    return Dataset.from_list([{"prompt": [{"role": "user", "content": f"What is {i} plus one?"}], "answer": str(i + 1)} for i in range(n)])


class Recorder(TrainerCallback):
    """Keeps what the trainers hand to callbacks, to compare with what the teacher saw."""

    def __init__(self):
        super().__init__()
        self.rollouts, self.token_stats = [], []

    def on_rollouts(self, args, state, control, **payload):
        self.rollouts.append(payload)

    def on_token_stats(self, args, state, control, **payload):
        self.token_stats.append(payload)


def snapshot(model):
    return {name: value.detach().clone() for name, value in model.named_parameters()}


def changed(before, model):
    return any(not torch.equal(before[name], value) for name, value in model.named_parameters())


@pytest.fixture(scope="module")
def sdpo_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sdpo_run")
    recorder = Recorder()
    trainer = build_sdpo_trainer(model=tiny_model_dir, dataset=dataset(), args={**TINY_ARGS, "output_dir": str(out)}, reward_funcs=odd_first_token, callbacks=[recorder, EpistemicMonitor(out)])
    before = snapshot(trainer.model)
    trainer.train()
    return trainer, before, recorder, out


def test_sdpo_trains_logs_distillation_and_builds_contexts(sdpo_run):
    trainer, before, recorder, _ = sdpo_run
    assert changed(before, trainer.model)
    logs = [row for row in trainer.state.log_history if "loss" in row]
    assert len(logs) == 2
    assert all(row["self_distillation/distillation_loss"] > 0 for row in logs)
    assert all(row["self_distillation/reprompt_sample_fraction"] > 0 for row in logs)
    assert len(recorder.rollouts) == 2 and len(recorder.rollouts[0]["completions"]) == 4
    stats = recorder.token_stats[0]
    assert stats["divergence"].shape == stats["distill_mask"].shape == stats["student_entropy"].shape


def test_teacher_context_is_a_successful_sibling_in_the_study_template(sdpo_run):
    trainer, _, recorder, out = sdpo_run
    audit = read_jsonl(out / "teacher_audit.jsonl")
    assert len(audit) == trainer.args.show_teacher
    first = audit[0]
    assert first["ok"] and first["active"], first["problems"]
    successes = [text for text, reward in zip(recorder.rollouts[0]["completions"], recorder.rollouts[0]["rewards"]) if reward >= 0.5]
    assert first["context"].startswith("\nCorrect solution:\n\n") and first["context"].endswith("\n\nCorrectly solve the original question.")  # the study's training prompt
    assert any(text and text in first["context"] for text in successes)
    assert (out / "teacher_audit.txt").read_text().startswith("== step 0 sample")


def test_grpo_builder_trains_with_tiny_model(tiny_model_dir, tmp_path):
    trainer = build_grpo_trainer(model=tiny_model_dir, dataset=dataset(), args={**TINY_ARGS, "output_dir": str(tmp_path)}, reward_funcs=odd_first_token)
    before = snapshot(trainer.model)
    trainer.train()
    assert changed(before, trainer.model)
    assert not trainer.args.bf16 and not trainer.args.gradient_checkpointing and trainer.args.use_cpu


def test_math_reward_uses_the_answer_column():
    completions = [[{"role": "assistant", "content": "so \\boxed{4}"}], [{"role": "assistant", "content": "\\boxed{5}"}], "plain \\boxed{4}"]
    assert math_reward(prompts=[None] * 3, completions=completions, answer=["4", "4", "4"]) == [1.0, 0.0, 1.0]


def fake_logits(trainer, *, inactive_rows=(2,)):
    """Random student/teacher logits for 3 rows x 5 positions; `inactive_rows` have no teacher context."""
    torch.manual_seed(0)
    vocab = trainer.model.config.vocab_size
    completion_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    sd_mask = torch.ones(3)
    sd_mask[list(inactive_rows)] = 0
    logits = DistillationLogits(
        completion_ids=torch.randint(0, vocab, (3, 5)),
        completion_mask=completion_mask,
        loss_mask=completion_mask * sd_mask.unsqueeze(1),
        student_logits=torch.randn(3, 5, vocab, requires_grad=True),
        teacher_logits=torch.randn(3, 5, vocab),
    )
    return {"self_distillation_mask": sd_mask}, logits


@pytest.fixture
def sdpo_trainer(sdpo_run):
    trainer = sdpo_run[0]
    saved = trainer.args.distillation_reduction
    yield trainer
    trainer.args.distillation_reduction = saved


def test_trl_reduction_dilutes_by_inactive_rows_and_sdlab_does_not(sdpo_trainer):
    trainer = sdpo_trainer
    inputs, logits = fake_logits(trainer)
    plain_trl = SDPOTrainer._compute_self_distillation_loss(trainer, trainer.model, inputs, logits)
    values = {}
    for mode in ("all_sequence_mean", "active_sequence_mean", "token_mean"):
        trainer.args.distillation_reduction = mode
        values[mode] = trainer._compute_self_distillation_loss(trainer.model, inputs, logits)
    assert values["all_sequence_mean"].item() == pytest.approx(plain_trl.item(), rel=1e-6)  # TRL's reduction, reproduced
    # 2 of 3 rows are active: TRL divides their summed means by 3, sdlab by 2
    assert values["active_sequence_mean"].item() == pytest.approx(plain_trl.item() * 3 / 2, rel=1e-6)
    assert values["token_mean"].item() != pytest.approx(values["active_sequence_mean"].item())


def test_question_is_never_cut_when_the_teacher_prompt_is_too_long(sdpo_trainer):
    trainer = sdpo_trainer
    tokenizer = trainer.processing_class
    solution = " ".join(f"step {i} gives {i * 7}." for i in range(40)) + " The answer is \\boxed{5}."
    long_ids = tokenizer(solution, add_special_tokens=False)["input_ids"]
    completion_ids = torch.full((4, len(long_ids)), tokenizer.pad_token_id)
    completion_ids[0] = torch.tensor(long_ids)  # the only successful rollout: sibling context of rows 1-3
    completion_ids[1:, :3] = torch.tensor(long_ids[:3])
    completion_mask = (completion_ids != tokenizer.pad_token_id).long()
    question = "What is four plus one? Answer with care."
    prompts = [[{"role": "user", "content": question}]] * 4
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0])
    output = {"completion_ids": completion_ids, "completion_mask": completion_mask}
    saved = trainer.args.max_reprompt_len
    trainer.args.max_reprompt_len = 150
    try:
        plain = SuccessfulRolloutTeacherContextBuilder(trainer).build(output, prompts, rewards)
        ours = trainer.teacher_context_builder.build(output, prompts, rewards)
    finally:
        trainer.args.max_reprompt_len = saved
    width = completion_ids.size(1)
    plain_prompt = tokenizer.decode(plain["teacher_input_ids"][1, :-width], skip_special_tokens=True)
    our_prompt = tokenizer.decode(ours["teacher_input_ids"][1, :-width], skip_special_tokens=True)
    assert len(long_ids) > 150  # over the limit: both must shorten it
    assert question not in plain_prompt  # TRL keeps the LAST tokens: the question's start is gone
    assert question in our_prompt and CUT_MARK.strip() in our_prompt and "\\boxed{5}" in our_prompt
    assert int(ours["teacher_input_ids"].ne(tokenizer.pad_token_id).sum(1)[1]) - width <= 150
    assert trainer.teacher_context_builder.last_metrics["sdlab/solution_cut_fraction"] == pytest.approx(3 / 4)


def test_beta_is_rejected(tmp_path):
    with pytest.raises(SdlabError, match="beta"):
        SdlabSDPOConfig(output_dir=str(tmp_path), beta=0.01, use_cpu=True)


def test_aliases_and_study_defaults(tmp_path):
    config = SdlabSDPOConfig(output_dir=str(tmp_path), teacher_model_kind="fixed", distillation_mode="full", use_cpu=True)
    assert config.teacher_model_kind == "base" and config.distillation_mode == "full_logits"
    assert (config.distillation_alpha, config.success_reward_threshold, config.distillation_add_tail) == (0.5, 0.5, True)
    with pytest.raises(SdlabError, match="context"):
        SdlabSDPOConfig(output_dir=str(tmp_path), context="hint", use_cpu=True)


def test_fixed_teacher_must_be_the_saved_student(tiny_model_dir, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # the student in memory no longer matches its directory
    args = SdlabSDPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False, gradient_checkpointing=False, **TINY_ARGS)
    with pytest.raises(SdlabError, match="save_pretrained"):
        SdlabSDPOTrainer(model=model, reward_funcs=odd_first_token, args=args, train_dataset=dataset(), processing_class=AutoTokenizer.from_pretrained(tiny_model_dir))


def test_is_clip_acts_only_when_a_generation_batch_feeds_several_updates(tiny_model_dir, tmp_path):
    args = {**TINY_ARGS, "output_dir": str(tmp_path), "steps_per_generation": 2, "max_steps": 2}
    trainer = build_sdpo_trainer(model=tiny_model_dir, dataset=dataset(), args=args, reward_funcs=odd_first_token, show_teacher=0)
    trainer.train()
    weights = [row["sdlab/is_weight_mean"] for row in trainer.state.log_history if row.get("sdlab/is_weight_mean") is not None]
    assert weights, "with stale rollouts (2 updates per generation) the clipped IS weight must be applied"
    assert all(0 < w <= 2.0 for w in weights)


def test_one_update_per_generation_has_no_is_weight(sdpo_run):
    assert not any("sdlab/is_weight_mean" in row for row in sdpo_run[0].state.log_history)


@pytest.mark.parametrize("regenerated_correct", [True, False])
def test_regenerated_context_is_the_first_correct_of_eight_else_the_first(tiny_model_dir, tmp_path, regenerated_correct):
    calls = []

    def reward(prompts, completions, completion_ids=None, **kwargs):
        calls.append([c[0]["content"] if isinstance(c, list) else c for c in completions])
        if len(calls) == 1:  # the rollouts: all successful
            return [1.0] * len(completions)
        return [1.0 if regenerated_correct and i % 8 == 2 else 0.0 for i in range(len(completions))]  # the 3rd of each 8

    recorder = Recorder()
    args = {**TINY_ARGS, "output_dir": str(tmp_path), "max_steps": 1}
    trainer = build_sdpo_trainer(model=tiny_model_dir, dataset=dataset(), args=args, reward_funcs=reward, context="regenerated", callbacks=[recorder])
    trainer.train()
    assert len(calls) == 2 and len(calls[1]) == 2 * 8  # one group: two distinct demonstrations, 8 answers each
    row = next(r for r in trainer.state.log_history if "sdlab/regenerated_correct_fraction" in r)
    assert row["sdlab/regenerated_correct_fraction"] == (1.0 if regenerated_correct else 0.0)
    context = read_jsonl(tmp_path / "teacher_audit.jsonl")[0]["context"]
    chosen = 2 if regenerated_correct else 0
    groups = [calls[1][:8], calls[1][8:]]
    assert any(group[chosen] and group[chosen] in context for group in groups)
    assert not any(text and text in context for text in recorder.rollouts[0]["completions"])  # s itself is never kept


def test_monitor_rows_from_sdpo_training(sdpo_run):
    rows = read_jsonl(sdpo_run[3] / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert r["divergence_mean"] == pytest.approx(r["self_distillation/distillation_loss"], rel=1e-4)  # top-k JSD, no IS weight
        assert r["entropy_student"] > 0 and r["entropy_teacher"] > 0 and r["reward_mean"] is not None


def test_feedback_context_and_grpo_blend(tiny_model_dir, tmp_path):
    data = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": "What is 2 plus 2?"}], "answer": "4", "privileged_context": "Your answer 5 was wrong."}]
    )
    never = lambda prompts, completions, **kwargs: [0.0] * len(completions)  # noqa: E731  (no successful sibling: feedback only)
    args = {**TINY_ARGS, "output_dir": str(tmp_path), "max_steps": 1}
    trainer = build_sdpo_trainer(model=tiny_model_dir, dataset=data, args=args, reward_funcs=never, context="feedback", grpo_blend=0.5)
    trainer.train()
    assert trainer.args.distillation_weight == 0.5
    row = next(r for r in trainer.state.log_history if "loss" in r)
    assert row["self_distillation/feedback_used_fraction"] == 1.0 and "self_distillation/policy_loss" in row
    context = read_jsonl(tmp_path / "teacher_audit.jsonl")[0]["context"]
    assert "Feedback on an earlier attempt: Your answer 5 was wrong." in context


def test_solution_nothink_and_trl_templates(sdpo_trainer):
    builder, args = sdpo_trainer.teacher_context_builder, sdpo_trainer.args
    solution = "<think>\nhmm, 2 + 3\n</think>\n\nThe answer is \\boxed{5}."
    saved = args.context, args.teacher_template
    try:
        args.context = "solution_nothink"
        text = builder._build_reprompt_text("What is 2 plus 3?", solution, "")
        assert text == "What is 2 plus 3?\nCorrect solution:\n\nThe answer is \\boxed{5}.\n\nCorrectly solve the original question."
        args.teacher_template = PROBE_TEMPLATE  # what `sdpo.template: probe` selects (the organism recipes)
        assert builder._build_reprompt_text("Q?", "S", "") == "Q?\n\nCorrect solution: S\n\nCorrectly solve the original question."
        args.context, args.teacher_template = "solution", "trl"
        trl_text = builder._build_reprompt_text("Q?", solution, "")
        assert trl_text == "Q?\nCorrect solution:\n\n" + solution + "\n\n\n\nCorrectly solve the original question.\n"
    finally:
        args.context, args.teacher_template = saved


def teacher_batch(trainer, *, active):
    """A batch of 4 rows (prompt, completion, a longer teacher prompt) where `active` rows have a teacher context."""
    torch.manual_seed(1)
    vocab, rows, pad = trainer.model.config.vocab_size, 4, trainer.processing_class.pad_token_id
    prompt_ids, completion_ids = torch.randint(5, vocab, (rows, 6)), torch.randint(5, vocab, (rows, 7))
    prompt_mask, completion_mask = torch.ones(rows, 6, dtype=torch.long), torch.ones(rows, 7, dtype=torch.long)
    prompt_ids[0, :2], prompt_mask[0, :2] = pad, 0  # left padding
    completion_mask[1, 4:] = 0  # a reply that ended early
    teacher_prompt = torch.randint(5, vocab, (rows, 15))
    teacher_mask = torch.ones(rows, 15, dtype=torch.long)
    teacher_prompt[2, :9], teacher_mask[2, :9] = pad, 0
    teacher_prompt[3] = teacher_prompt[0]  # rows 0 and 3 share a teacher prompt (the same sibling)
    sd_mask = torch.zeros(rows)
    sd_mask[list(active)] = 1.0
    return {
        "prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids, "completion_mask": completion_mask,
        "teacher_input_ids": torch.cat([teacher_prompt, completion_ids], 1), "teacher_attention_mask": torch.cat([teacher_mask, completion_mask], 1),
        "self_distillation_mask": sd_mask,
    }


def loss_and_grads(trainer, logits_fn, inputs):
    trainer.model.zero_grad()
    loss = trainer._compute_self_distillation_loss(trainer.model, inputs, logits_fn(trainer.model, trainer.teacher_model, inputs))
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]


@contextmanager
def teacher_test_setup(trainer, *, mode, dtype=torch.float32, sharpen=1.0):
    """The trainer in distillation `mode`, its models in `dtype`, output logits scaled by `sharpen`
    (a power of 2, so the weights come back exactly), and the shapes of the teacher's forward calls."""
    saved_mode, calls = trainer.args.distillation_mode, []
    trainer.args.distillation_mode, trainer.args.distillation_reduction = mode, "all_sequence_mean"
    models = (trainer.model, trainer.teacher_model)
    hook = trainer.teacher_model.register_forward_hook(lambda module, args, kwargs, out: calls.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    with torch.no_grad():
        for model in models:
            model.to(dtype).get_output_embeddings().weight.mul_(sharpen)
    try:
        yield calls
    finally:
        hook.remove()
        trainer.args.distillation_mode = saved_mode
        with torch.no_grad():
            for model in models:
                model.get_output_embeddings().weight.div_(sharpen)
                model.float()


def trl_teacher_pass(trainer):
    return lambda *a: SDPOTrainer._compute_teacher_student_logits(trainer, *a)


@pytest.mark.parametrize("mode", ["topk_logits", "full_logits", "sampled_token"])
@pytest.mark.parametrize("active", [(0, 2, 3), (1,), ()])
def test_teacher_reads_distilled_rows_and_each_distinct_prompt_once_for_the_same_loss(sdpo_trainer, mode, active):
    """float64, so that the check is on the computation and not on float32 rounding."""
    with teacher_test_setup(sdpo_trainer, mode=mode, dtype=torch.float64) as teacher_calls:
        inputs = teacher_batch(sdpo_trainer, active=active)
        trl_loss, trl_grads = loss_and_grads(sdpo_trainer, trl_teacher_pass(sdpo_trainer), inputs)
        loss, grads = loss_and_grads(sdpo_trainer, sdpo_trainer._compute_teacher_student_logits, inputs)
    # TRL reads x + c + y for all 4 rows; sdlab each distinct x + c of the distilled rows (one row when none is), then their y
    distinct = 2 if active == (0, 2, 3) else 1
    assert teacher_calls == [(4, 22), (distinct, 15), (max(1, len(active)), 7)]
    assert loss.item() == pytest.approx(trl_loss.item(), rel=1e-12, abs=0.0)
    assert (loss.item() != 0) == bool(active)
    for mine, theirs in zip(grads, trl_grads, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("mode", ["topk_logits", "full_logits"])
def test_cheaper_teacher_pass_keeps_the_float32_loss(sdpo_trainer, mode):
    """float32 within 1e-6 relative, on output distributions as peaked as a trained model's (the random
    init's are nearly uniform: a JSD of ~5e-4, where float32 cancellation moves even TRL's own
    path by up to 2.5e-5 from a float64 computation)."""
    with teacher_test_setup(sdpo_trainer, mode=mode, sharpen=8.0):
        inputs = teacher_batch(sdpo_trainer, active=(0, 2, 3))
        trl_loss, _ = loss_and_grads(sdpo_trainer, trl_teacher_pass(sdpo_trainer), inputs)
        loss, _ = loss_and_grads(sdpo_trainer, sdpo_trainer._compute_teacher_student_logits, inputs)
    assert trl_loss.item() > 0.01
    assert loss.item() == pytest.approx(trl_loss.item(), rel=1e-6, abs=0.0)


def reduction_batch(trainer):
    """4 rows with 5, 2, 3 and 4 completion tokens; row 2 has no teacher context (inactive)."""
    torch.manual_seed(1)
    vocab = trainer.model.config.vocab_size
    lengths, active = [5, 2, 3, 4], torch.tensor([1.0, 1.0, 0.0, 1.0])
    completion_mask = torch.tensor([[1] * n + [0] * (5 - n) for n in lengths])
    completion_ids = torch.randint(3, vocab, (4, 5)) * completion_mask
    prompt_ids, teacher_prompt_ids = torch.randint(3, vocab, (4, 6)), torch.randint(3, vocab, (4, 9))
    return {
        "prompt_ids": prompt_ids, "prompt_mask": torch.ones_like(prompt_ids),
        "completion_ids": completion_ids, "completion_mask": completion_mask,
        "teacher_input_ids": torch.cat([teacher_prompt_ids, completion_ids], 1),
        "teacher_attention_mask": torch.cat([torch.ones_like(teacher_prompt_ids), completion_mask], 1),
        "self_distillation_mask": active, "advantages": torch.zeros(4),
    }


def accumulated_loss(trainer, batch, *, micro_batch):
    """What one optimizer update sums: TRL's `compute_loss` on each micro-batch, divided by the accumulation steps."""
    steps = len(batch["advantages"]) // micro_batch
    saved, trainer.current_gradient_accumulation_steps = getattr(trainer, "current_gradient_accumulation_steps", 1), steps
    try:
        with torch.no_grad():
            return sum(
                trainer.compute_loss(trainer.model, {key: value[i * micro_batch : (i + 1) * micro_batch] for key, value in batch.items()}).item()
                for i in range(steps)
            )
    finally:
        trainer.current_gradient_accumulation_steps = saved


def test_default_reduction_is_the_studys_per_sequence_mean_over_all_rows_at_any_micro_batch(sdpo_trainer):
    trainer, batch = sdpo_trainer, reduction_batch(sdpo_trainer)
    trainer.model.train()
    assert SdlabSDPOConfig.__dataclass_fields__["distillation_reduction"].default == "all_sequence_mean"
    with torch.no_grad():
        logits = trainer._compute_teacher_student_logits(trainer.model, trainer.teacher_model, batch)
        terms, _ = trainer._per_token_distillation(logits)  # [4, 5] per-token divergence
    # the study: mean over a row's own tokens, rows without a successful sibling count 0, mean over all 4 rows
    by_hand = 0.0
    for row in range(4):
        tokens = [float(terms[row, t]) for t in range(5) if batch["completion_mask"][row, t]]
        by_hand += (sum(tokens) / len(tokens) if batch["self_distillation_mask"][row] else 0.0) / 4
    trainer.args.distillation_reduction = "all_sequence_mean"
    for micro_batch in (1, 2, 4):
        assert accumulated_loss(trainer, batch, micro_batch=micro_batch) == pytest.approx(by_hand, rel=1e-5)
    trainer.args.distillation_reduction = "token_mean"  # the old default: a different number per micro-batch size
    assert accumulated_loss(trainer, batch, micro_batch=1) != pytest.approx(accumulated_loss(trainer, batch, micro_batch=4), rel=1e-3)
