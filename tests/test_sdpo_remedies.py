"""The remedies in sdlab's SDPO trainer on a tiny random Qwen2: every option on at once trains and
logs its metrics, and the options reach the loss as the pure functions say (tests/test_remedies.py)."""

from __future__ import annotations

import pytest
import torch

from sdlab import SdlabError
from sdlab.config.schema import SdpoConfig
from sdlab.core.contexts import end_context_rows
from sdlab.core.epistemic import token_marker_occurrences
from sdlab.core.io import read_jsonl
from sdlab.core.losses import Reduction, agg_loss, clip_divergence, scatter_rows, topk_tail_divergence, weight_marker_tokens
from sdlab.training.callbacks import EpistemicMonitor
from sdlab.training.sdpo import SdlabSDPOConfig, build_sdpo_trainer
from tests.test_sdpo import TINY_ARGS, dataset

REMEDY_METRICS = ("sdlab/marker_token_fraction", "sdlab/clipped_token_fraction", "sdlab/end_context_share", "sdlab/end_context_fraction", "sdlab/distilled_row_fraction")


def first_two_of_each_group(prompts, completions, completion_ids=None, **kwargs):
    """Rollouts 0 and 1 of each group of 4 succeed: every row has a successful sibling, half agree."""
    return [float(row % 4 < 2) for row in range(len(completions))]


@pytest.fixture(scope="module")
def remedies_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("remedies_run")
    trainer = build_sdpo_trainer(
        model=tiny_model_dir, dataset=dataset(), args={**TINY_ARGS, "output_dir": str(out)}, reward_funcs=first_two_of_each_group,
        callbacks=[EpistemicMonitor(out)], grpo_blend=0.5, marker_weight=0.5, divergence_clip=1e-5, distill_rows="agreeing",
        context_schedule={"start": "solution_nothink", "steps": 1},
    )
    trainer.train()
    return trainer, out


def test_every_remedy_at_once_trains_and_logs_its_metrics(remedies_run):
    trainer, out = remedies_run
    rows = read_jsonl(out / "metrics.jsonl")
    assert [row["step"] for row in rows] == [1, 2]
    for row in rows:
        assert all(row.get(name) is not None for name in REMEDY_METRICS), [name for name in REMEDY_METRICS if row.get(name) is None]
        assert row["sdlab/distilled_row_fraction"] == 0.5  # of 4 rows with a context, the 2 that succeed themselves
        assert row["sdlab/clipped_token_fraction"] > 0 and row["self_distillation/policy_loss"] is not None
    # the schedule over 1 step: no rollout given the end context (solution) at step 0, all of them from step 1
    assert [(row["sdlab/end_context_share"], row["sdlab/end_context_fraction"]) for row in rows] == [(0.0, 0.0), (1.0, 1.0)]
    assert trainer.args.distillation_weight == 0.5


@pytest.mark.parametrize("mode", ["topk_logits", "full_logits", "sampled_token"])
def test_the_trainers_marker_weight_and_clip_are_the_pure_functions_in_every_mode_and_reduction(remedies_run, mode):
    """The loss with `marker_weight` and `divergence_clip` equals the pure functions applied to the
    plain per-token divergence, for every reduction; the markers are every piece of an occurrence."""
    trainer, _ = remedies_run
    tokenizer, args = trainer.processing_class, trainer.args
    ids = tokenizer("so wait, hmm 3 is it", add_special_tokens=False)["input_ids"]
    markers = torch.tensor([[occurrence >= 0 for occurrence in token_marker_occurrences(ids, tokenizer)]] * 2)
    assert markers.any() and not markers.all()
    torch.manual_seed(0)
    vocab, width = trainer.model.config.vocab_size, len(ids)
    completion_mask = torch.ones(2, width, dtype=torch.long)
    prompt_ids, teacher_ids, completion_ids = torch.randint(5, vocab, (2, 4)), torch.randint(5, vocab, (2, 6)), torch.tensor([ids, ids])
    batch = {"prompt_ids": prompt_ids, "prompt_mask": torch.ones_like(prompt_ids), "completion_ids": completion_ids, "completion_mask": completion_mask,
             "teacher_input_ids": torch.cat([teacher_ids, completion_ids], 1), "teacher_attention_mask": torch.cat([torch.ones_like(teacher_ids), completion_mask], 1),
             "self_distillation_mask": torch.tensor([1.0, 0.0])}
    saved = args.marker_weight, args.divergence_clip, args.distillation_mode, args.distillation_reduction
    try:
        args.distillation_mode, args.divergence_clip = mode, None
        with torch.no_grad():
            logits = trainer._compute_teacher_student_logits(trainer.model, trainer.teacher_model, batch)
            plain, divergence = trainer._per_token_distillation(logits)
            clip = float(divergence[0].median())  # about half the tokens past the cap
            args.divergence_clip = clip
            clipped, _ = trainer._per_token_distillation(logits)
            for reduction in Reduction:
                args.distillation_reduction = reduction.value
                for weight in (0.0, 0.5, 1.0):
                    args.marker_weight = weight
                    loss = trainer._compute_self_distillation_loss(trainer.model, batch, logits)
                    terms = clipped if mode == "sampled_token" else clip_divergence(plain, clip=clip)  # sampled: the cap is inside the surrogate
                    by_hand = agg_loss(weight_marker_tokens(terms, markers, weight=weight), logits.loss_mask, mode=reduction)
                    assert loss.item() == by_hand.item()
            assert not torch.equal(clipped, plain)
    finally:
        args.marker_weight, args.divergence_clip, args.distillation_mode, args.distillation_reduction = saved


def test_the_defaults_leave_the_loss_bit_for_bit_as_before(remedies_run):
    """marker_weight 1 and no clip: the loss is exactly the reduction of the plain top-k + tail
    divergence, as computed before the remedies existed (no reweighting, no clamp in between)."""
    trainer, _ = remedies_run
    args = trainer.args
    for name, default in (("marker_weight", 1.0), ("divergence_clip", None), ("distill_rows", "all"), ("context_schedule_start", None)):
        assert SdlabSDPOConfig.__dataclass_fields__[name].default == default
    batch = {key: value[:2] for key, value in trainer._buffered_inputs[0].items()}
    saved = args.marker_weight, args.divergence_clip
    try:
        args.marker_weight, args.divergence_clip = 1.0, None
        with torch.no_grad():
            logits = trainer._compute_teacher_student_logits(trainer.model, trainer.teacher_model, batch)
            loss = trainer._compute_self_distillation_loss(trainer.model, batch, logits)
            rows = logits.teacher_rows
            student = logits.student_logits if rows is None else logits.student_logits[rows]
            plain = topk_tail_divergence(student, logits.teacher_logits, k=args.distillation_topk, alpha=args.distillation_alpha, add_tail=args.distillation_add_tail)
            before = agg_loss(scatter_rows(plain, rows, len(logits.student_logits)), logits.loss_mask, mode=args.distillation_reduction)
    finally:
        args.marker_weight, args.divergence_clip = saved
    assert args.distillation_mode == "topk_logits" and loss.item() == before.item() and loss.item() > 0


def test_remedy_settings_are_checked_with_the_field_named(tmp_path):
    with pytest.raises(SdlabError, match="marker_weight"):
        SdlabSDPOConfig(output_dir=str(tmp_path), marker_weight=-1.0, use_cpu=True)
    with pytest.raises(SdlabError, match="distill_rows"):
        SdlabSDPOConfig(output_dir=str(tmp_path), distill_rows="some", use_cpu=True)
    with pytest.raises(SdlabError, match="context=feedback has none"):
        SdlabSDPOConfig(output_dir=str(tmp_path), distill_rows="agreeing", context="feedback", use_cpu=True)
    with pytest.raises(ValueError, match="context=feedback has none"):
        SdpoConfig(distill_rows="agreeing", context="feedback")
    with pytest.raises(SdlabError, match="solution and solution_nothink"):
        SdlabSDPOConfig(output_dir=str(tmp_path), context="regenerated", context_schedule_start="solution", use_cpu=True)
    with pytest.raises(ValueError, match="solution and solution_nothink"):
        SdpoConfig(context="solution", context_schedule={"start": "solution"})
    with pytest.raises(ValueError, match="divergence_clip"):
        SdpoConfig(divergence_clip=0.0)
    assert SdpoConfig(context_schedule={"start": "solution_nothink", "share": 0.5}).context_schedule.share == 0.5


def test_the_schedule_gives_each_chosen_rollout_the_end_context_and_the_others_the_start(remedies_run):
    trainer, _ = remedies_run
    tokenizer, args = trainer.processing_class, trainer.args
    solution = "<think>\nhmm, 2 + 3\n</think>\n\nThe answer is \\boxed{5}."
    ids = tokenizer(solution, add_special_tokens=False)["input_ids"]
    completion_ids = torch.tensor([ids] * 4)
    output = {"completion_ids": completion_ids, "completion_mask": torch.ones_like(completion_ids)}
    prompts = [[{"role": "user", "content": "What is 2 plus 3?"}]] * 4
    saved = args.context_schedule_share
    args.context_schedule_share = 0.5
    try:
        built = trainer.teacher_context_builder.build(output, prompts, torch.tensor([1.0, 1.0, 0.0, 0.0]))
    finally:
        args.context_schedule_share = saved
    teacher_prompts = [tokenizer.decode(row[: -len(ids)], skip_special_tokens=True) for row in built["teacher_input_ids"]]
    step = trainer.state.global_step  # one update per generation batch here
    expected = end_context_rows(4, share=0.5, seed=args.seed, step=step)  # True: the end context, solution with its think block
    assert [("<think>" in text) for text in teacher_prompts] == expected and sum(expected) == 2
    assert all("\\boxed{5}" in text for text in teacher_prompts)
    assert trainer.teacher_context_builder.last_metrics["sdlab/end_context_fraction"] == 0.5


def test_every_key_of_a_recipes_sdpo_section_is_a_trainer_keyword():
    """`sdlab train` hands the `sdpo:` section to build_sdpo_trainer key for key (sdlab.training.run)."""
    import inspect

    assert set(SdpoConfig.model_fields) - {"show_teacher"} <= set(inspect.signature(build_sdpo_trainer).parameters)


def test_the_schedule_counts_generation_batches_under_gradient_accumulation(tiny_model_dir, tmp_path):
    """Two micro-batches per update, one update per generation batch: the ramp over 1 step still
    reaches the end context at the second generation batch (global_step counts updates, not micro-steps)."""
    args = {**TINY_ARGS, "output_dir": str(tmp_path), "per_device_train_batch_size": 2, "gradient_accumulation_steps": 2, "steps_per_generation": 2}
    trainer = build_sdpo_trainer(model=tiny_model_dir, dataset=dataset(), args=args, reward_funcs=first_two_of_each_group, show_teacher=0,
                                 context_schedule={"start": "solution_nothink", "steps": 1})
    trainer.train()
    assert [row["sdlab/end_context_share"] for row in trainer.state.log_history if "sdlab/end_context_share" in row] == [0.0, 1.0]
