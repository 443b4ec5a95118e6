"""Distillation losses against hand-computed values on tiny vocabularies, and against TRL's own helpers."""

from __future__ import annotations

import math

import pytest
import torch
from trl.experimental.sdpo import loss_utils as trl_losses

from sdlab.core import losses

TEACHER = [0.5, 0.5]
STUDENT = [0.25, 0.75]


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def log_probs(probs):
    return torch.tensor(probs, dtype=torch.float64).log()


def test_forward_kl_is_kl_teacher_student():
    value = losses.divergence(log_probs(STUDENT), log_probs(TEACHER), alpha=0.0)
    # 0.5 ln(0.5 / 0.25) + 0.5 ln(0.5 / 0.75) = 0.5 ln(4/3)
    assert value.item() == pytest.approx(0.5 * math.log(4 / 3), abs=1e-12)


def test_reverse_kl_is_kl_student_teacher():
    value = losses.divergence(log_probs(STUDENT), log_probs(TEACHER), alpha=1.0)
    assert value.item() == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5), abs=1e-12)


@pytest.mark.parametrize("alpha", [0.5, 0.25])
def test_jsd_mixture_weights_teacher_by_alpha(alpha):
    mixture = [(1 - alpha) * s + alpha * t for s, t in zip(STUDENT, TEACHER)]
    expected = alpha * kl(TEACHER, mixture) + (1 - alpha) * kl(STUDENT, mixture)
    value = losses.divergence(log_probs(STUDENT), log_probs(TEACHER), alpha=alpha)
    assert value.item() == pytest.approx(expected, abs=1e-12)
    if alpha == 0.5:  # the symmetric JSD, by hand: m = [0.375, 0.625]
        assert value.item() == pytest.approx(0.5 * (0.5 * math.log(16 / 15) + 0.25 * math.log(2 / 3) + 0.75 * math.log(1.2)), abs=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_divergence_matches_trl_convention(alpha):
    torch.manual_seed(0)
    student = torch.randn(3, 5, 11).log_softmax(-1)
    teacher = torch.randn(3, 5, 11).log_softmax(-1)
    ours = losses.divergence(student, teacher, alpha=alpha)
    assert torch.allclose(ours, trl_losses.compute_divergence(student, teacher, alpha), atol=1e-6)


def test_topk_tail_by_hand():
    student = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    teacher = torch.tensor([0.2, 0.4, 0.1, 0.3]).log()
    value = losses.topk_tail_divergence(student, teacher, k=2, alpha=1.0)
    # support = the student's top-2 tokens {0, 1}; tails: student 0.2, teacher 0.4
    assert value.item() == pytest.approx(kl([0.5, 0.3, 0.2], [0.2, 0.4, 0.4]), abs=1e-5)
    renormalised = losses.topk_tail_divergence(student, teacher, k=2, alpha=1.0, add_tail=False)
    assert renormalised.item() == pytest.approx(kl([0.5 / 0.8, 0.3 / 0.8], [1 / 3, 2 / 3]), abs=1e-5)


@pytest.mark.parametrize("add_tail", [True, False])
def test_topk_matches_trl(add_tail):
    torch.manual_seed(1)
    student, teacher = torch.randn(2, 4, 50), torch.randn(2, 4, 50)
    ours = losses.topk_tail_divergence(student, teacher, k=7, alpha=0.5, add_tail=add_tail)
    theirs = trl_losses.compute_topk_self_distillation_loss(
        student, teacher, distillation_topk=7, distillation_alpha=0.5, distillation_add_tail=add_tail
    )
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_topk_with_whole_vocabulary_equals_full():
    torch.manual_seed(2)
    student, teacher = torch.randn(2, 3, 9, dtype=torch.float64), torch.randn(2, 3, 9, dtype=torch.float64)
    full = losses.full_vocab_divergence(student, teacher, alpha=0.5)
    assert torch.allclose(losses.topk_tail_divergence(student, teacher, k=9, alpha=0.5), full, atol=1e-6)


def test_sampled_token_log_ratio_and_loss_by_hand():
    student = torch.tensor([[[0.25, 0.75]]]).log().requires_grad_()
    teacher = torch.tensor([[[0.5, 0.5]]]).log()
    token = torch.tensor([[1]])
    ratio = losses.sampled_token_log_ratio(student, teacher, token)
    assert ratio.item() == pytest.approx(math.log(0.75 / 0.5), abs=1e-6)
    loss = losses.sampled_token_loss(student, teacher, token)
    assert loss.item() == pytest.approx(math.log(1.5) * math.log(0.75), abs=1e-6)
    theirs = trl_losses.compute_sampled_token_self_distillation_loss(student, teacher, token, distillation_alpha=1.0)
    assert torch.allclose(loss, theirs)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_chunked_full_vocab_equals_plain_in_value_and_gradient(alpha):
    torch.manual_seed(3)
    student = torch.randn(3, 7, 40, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(3, 7, 40, dtype=torch.float64)
    weights = torch.rand(3, 7, dtype=torch.float64)
    plain = losses.full_vocab_divergence(student, teacher, alpha=alpha)
    (grad_plain,) = torch.autograd.grad((plain * weights).sum(), student)
    chunked = losses.chunked_full_vocab_divergence(student, teacher, alpha=alpha, chunk_tokens=4)  # 21 = 5 chunks + 1
    (grad_chunked,) = torch.autograd.grad((chunked * weights).sum(), student)
    assert torch.allclose(plain, chunked, atol=1e-12)
    assert torch.allclose(grad_plain, grad_chunked, atol=1e-12)


def test_clipped_importance_weight():
    now = torch.tensor([0.0, math.log(3.0), math.log(0.5)])
    weight = losses.clipped_importance_weight(now, torch.zeros(3), clip=2.0)
    assert weight.tolist() == pytest.approx([1.0, 2.0, 0.5])


def test_entropy_from_logits():
    logits = torch.tensor([[[0.0, 0.0], [0.0, -1e9]]])
    assert losses.entropy_from_logits(logits, chunk_tokens=1)[0].tolist() == pytest.approx([math.log(2), 0.0], abs=1e-6)


LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [9.0, 9.0, 9.0]])
MASK = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]])


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("token_mean", (1 + 2 + 4) / 3),
        ("active_sequence_mean", (1.5 + 4) / 2),  # the empty third row is left out
        ("all_sequence_mean", (1.5 + 4 + 0) / 3),  # TRL SDPO: the empty row counts as 0 and dilutes
    ],
)
def test_agg_loss_modes(mode, expected):
    assert losses.agg_loss(LOSS, MASK, mode=mode).item() == pytest.approx(expected)


def test_agg_loss_empty_mask_is_zero_with_graph():
    values = torch.ones(2, 3, requires_grad=True)
    for mode in losses.Reduction:
        out = losses.agg_loss(values, torch.zeros(2, 3), mode=mode)
        assert out.item() == 0.0 and out.requires_grad


def test_agg_loss_rejects_unknown_mode():
    with pytest.raises(ValueError):
        losses.agg_loss(LOSS, MASK, mode="sum")


def test_split_by_mask():
    values = torch.tensor([1.0, 6.0, 3.0, 4.0])
    token_mask = torch.tensor([1, 1, 1, 0])  # the last token is padding: its marker flag must not count
    marker_mask = torch.tensor([0, 1, 0, 1])
    split = losses.split_by_mask(values, token_mask, marker_mask)
    assert split["marker_mean"] == 6.0 and split["other_mean"] == 2.0
    assert split["ratio"] == 3.0
    assert split["marker_share"] == pytest.approx(0.6)
    assert (split["marker_tokens"], split["other_tokens"]) == (1, 2)


def test_split_by_mask_without_markers_is_nan_not_error():
    split = losses.split_by_mask(torch.ones(3), torch.ones(3), torch.zeros(3))
    assert math.isnan(split["marker_mean"]) and math.isnan(split["ratio"]) and split["marker_share"] == 0.0


@pytest.mark.parametrize("add_tail", [True, False])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_topk_gradient_matches_trl_autograd(add_tail, alpha):
    torch.manual_seed(4)
    student = torch.randn(2, 5, 30, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(2, 5, 30, dtype=torch.float64)
    weights = torch.rand(2, 5, dtype=torch.float64)
    ours = losses.topk_tail_divergence(student, teacher, k=6, alpha=alpha, add_tail=add_tail)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), student)
    theirs = trl_losses.compute_topk_self_distillation_loss(student, teacher, distillation_topk=6, distillation_alpha=alpha, distillation_add_tail=add_tail)
    (grad_theirs,) = torch.autograd.grad((theirs * weights).sum(), student)
    assert torch.allclose(ours, theirs, atol=1e-10)
    assert torch.allclose(grad_ours, grad_theirs, atol=1e-10)


def test_topk_tail_when_the_top_k_holds_all_the_mass():
    student = torch.tensor([[[0.0, 0.0, -1e4]]], requires_grad=True)  # the tail has (numerically) no mass
    teacher = torch.tensor([[[0.0, -1.0, -1e4]]])
    value = losses.topk_tail_divergence(student, teacher, k=2, alpha=0.5)
    (grad,) = torch.autograd.grad(value.sum(), student)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()


def test_split_by_occurrence_counts_each_marker_once_by_first_piece_and_by_sum():
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 0.5, 0.2])
    occurrence = torch.tensor([0, 0, -1, -1, 1, -1])  # "wa"+"it" (1.0, 2.0), then a one-piece marker (0.5)
    split = losses.split_by_occurrence(values, occurrence)
    other = (3.0 + 4.0 + 0.2) / 3
    assert split["occurrences"] == 2
    assert split["first_piece_mean"] == pytest.approx((1.0 + 0.5) / 2) and split["first_piece_ratio"] == pytest.approx(0.75 / other)
    assert split["occurrence_sum_mean"] == pytest.approx((3.0 + 0.5) / 2) and split["occurrence_sum_ratio"] == pytest.approx(1.75 / other)
    none = losses.split_by_occurrence(values, torch.full((6,), -1))
    assert none["occurrences"] == 0 and math.isnan(none["first_piece_ratio"])


def test_concat_occurrences_keeps_ids_unique():
    pooled = losses.concat_occurrences([torch.tensor([0, 0, -1, 1]), torch.tensor([-1, -1]), torch.tensor([0, -1, 0])])
    assert pooled.tolist() == [0, 0, -1, 1, -1, -1, 2, -1, 2]
