"""Pure distillation losses: per-token divergences between a student and a teacher, and masked reductions.

Every function takes tensors and keyword scalars, never a config. Shapes: B batch rows, T completion
positions, V vocabulary, K top-k support. The divergence convention is TRL's
(`trl.experimental.sdpo.loss_utils.compute_divergence`), so sdlab's numbers are comparable with TRL's:

    alpha = 0        forward KL   KL(teacher || student)
    alpha = 1        reverse KL   KL(student || teacher)
    0 < alpha < 1    generalised JSD with mixture m = (1 - alpha) * p_student + alpha * p_teacher,
                     value = alpha * KL(teacher || m) + (1 - alpha) * KL(student || m)

(alpha = 0.5 is the symmetric Jensen-Shannon divergence the study uses.) docs/algorithms.md maps each
equation to its function here.
"""

from __future__ import annotations

import math
from enum import StrEnum

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


class Reduction(StrEnum):
    """How a [B, T] per-token loss becomes one number."""

    TOKEN_MEAN = "token_mean"  # sum over every active token / number of active tokens (depends on the micro-batch)
    ACTIVE_SEQUENCE_MEAN = "active_sequence_mean"  # mean per sequence, then mean over sequences with >= 1 active token
    # mean per sequence, then mean over ALL rows (empty rows count 0): TRL's SDPO and the study's
    # (verl, micro-batch 1, scaled by 1/accumulation); summed over equal micro-batches / accumulation
    # it is the same number whatever the micro-batch size
    ALL_SEQUENCE_MEAN = "all_sequence_mean"


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) summed over the last axis, from log-probabilities (0 * log 0 taken as 0)."""
    return F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(-1)


def divergence(student_log_probs: torch.Tensor, teacher_log_probs: torch.Tensor, *, alpha: float) -> torch.Tensor:
    """Per-position divergence between two normalised distributions given as log-probs.

    [..., V] x [..., V] -> [...]; alpha as in the module docstring (TRL's convention).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if alpha == 0.0:
        return _kl(teacher_log_probs, student_log_probs)
    if alpha == 1.0:
        return _kl(student_log_probs, teacher_log_probs)
    mixture = torch.logsumexp(  # log((1 - alpha) * p_s + alpha * p_t), [..., V]
        torch.stack([student_log_probs + math.log(1 - alpha), teacher_log_probs + math.log(alpha)]), dim=0
    )
    return alpha * _kl(teacher_log_probs, mixture) + (1 - alpha) * _kl(student_log_probs, mixture)


def full_vocab_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, alpha: float) -> torch.Tensor:
    """[B, T, V] logits -> [B, T] divergence over the whole vocabulary."""
    return divergence(student_logits.log_softmax(-1), teacher_logits.log_softmax(-1), alpha=alpha)


def chunked_full_vocab_divergence(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, alpha: float, chunk_tokens: int = 512
) -> torch.Tensor:
    """Same values and gradients as `full_vocab_divergence`, with bounded working memory.

    The plain version keeps several [B*T, V] tensors alive for backward (two log-softmaxes, the
    mixture, the KL terms). Here each chunk of `chunk_tokens` positions runs under activation
    checkpointing: only the input logits are kept and each chunk is recomputed during backward,
    so the extra memory is a few [chunk_tokens, V] tensors whatever the response length.
    """
    shape = student_logits.shape[:-1]  # [B, T]
    student_flat = student_logits.reshape(-1, student_logits.size(-1))  # [N, V]
    teacher_flat = teacher_logits.reshape(-1, teacher_logits.size(-1))  # [N, V]
    pieces = []
    for start in range(0, student_flat.size(0), chunk_tokens):
        stop = start + chunk_tokens
        if torch.is_grad_enabled() and (student_flat.requires_grad or teacher_flat.requires_grad):
            piece = checkpoint(
                full_vocab_divergence, student_flat[start:stop], teacher_flat[start:stop], alpha=alpha, use_reentrant=False
            )
        else:
            piece = full_vocab_divergence(student_flat[start:stop], teacher_flat[start:stop], alpha=alpha)
        pieces.append(piece)
    return torch.cat(pieces).reshape(shape)


def add_tail_bucket(log_probs: torch.Tensor) -> torch.Tensor:
    """[..., K] log-probs of a top-k subset (summing to P_topk <= 1) -> [..., K+1] with a bucket for 1 - P_topk.

    Same arithmetic as TRL's `add_tail_bucket` (mass clamped just below 1 so the tail log stays finite).
    """
    captured = torch.logsumexp(log_probs, dim=-1, keepdim=True).clamp(max=-1e-7)  # log P_topk, [..., 1]
    tail = torch.log(-torch.expm1(captured))  # log(1 - P_topk)
    return torch.cat([log_probs, tail], dim=-1)


def _row_logsumexp(logits: torch.Tensor, *, chunk_rows: int = 1024) -> torch.Tensor:
    """[N, V] -> [N, 1] logsumexp, by chunks of rows so the exp temporary is [chunk_rows, V], not [N, V]."""
    work = torch.promote_types(logits.dtype, torch.float32)  # bf16 logits are summed in float32
    return torch.cat([torch.logsumexp(logits[i : i + chunk_rows].to(work), -1, keepdim=True) for i in range(0, logits.size(0), chunk_rows)])


class _TopkTailLogProbs(torch.autograd.Function):
    """[N, V] logits, [N, K] token ids -> [N, K+1] log-probs of those tokens plus the tail bucket.

    Same values as log_softmax -> gather -> `add_tail_bucket`, but backward writes the dense
    [N, V] gradient into a single buffer: p_j * c + (corrections on the K ids), with
    c = -sum(g_topk) + g_tail * P / (1 - P) and correction_i = g_i - g_tail * p_i / (1 - P)
    (P: top-k mass). Autograd through logsumexp, gather and log would hold several [N, V] tensors.
    """

    @staticmethod
    def forward(ctx, logits, index):
        lse = _row_logsumexp(logits.detach())  # [N, 1]
        top = logits.detach().gather(-1, index).to(lse.dtype) - lse  # [N, K]
        captured = torch.logsumexp(top, -1, keepdim=True)  # log P, [N, 1]
        remainder = -torch.expm1(captured.clamp(max=-1e-7))  # 1 - P, clamped as TRL does
        ctx.save_for_backward(logits, index, lse, top, captured, remainder)
        return torch.cat([top, remainder.log()], -1).to(logits.dtype)

    @staticmethod
    def backward(ctx, grad):
        logits, index, lse, top, captured, remainder = ctx.saved_tensors
        grad = grad.to(lse.dtype)
        g_top, g_tail = grad[:, :-1], grad[:, -1:].masked_fill(captured > -1e-7, 0.0)  # the clamp blocks the tail's gradient
        scale = -g_top.sum(-1, keepdim=True) + g_tail * captured.exp() / remainder  # [N, 1]
        correction = g_top - g_tail * top.exp() / remainder  # [N, K]
        out = (logits.to(lse.dtype) - lse).exp_().mul_(scale)  # the one [N, V] buffer
        out.scatter_add_(-1, index, correction)
        return out.to(logits.dtype), None


def topk_tail_divergence(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, k: int, alpha: float, add_tail: bool = True
) -> torch.Tensor:
    """[B, T, V] -> [B, T] divergence on the student's top-k tokens (+ one tail bucket).

    The study's "top-100 logits + tail": the support is the student's k most likely tokens;
    both distributions are read on it with their true (full-softmax) probabilities and the
    remaining mass of each goes into one extra bucket, so the result is a divergence between
    two (k+1)-way distributions. With `add_tail=False` both are renormalised over the top-k
    instead (TRL's other option). Only [N, K] tensors are kept for backward, never [N, V].
    """
    vocab = student_logits.size(-1)
    student = student_logits.reshape(-1, vocab)  # [N, V]
    teacher = teacher_logits.reshape(-1, vocab)  # [N, V]
    index = student.detach().topk(k, dim=-1).indices  # [N, K]
    if add_tail:
        student_log_probs = _TopkTailLogProbs.apply(student, index)  # [N, K+1]
        teacher_log_probs = _TopkTailLogProbs.apply(teacher, index)
    else:  # renormalised over the top-k: the full logsumexp cancels
        student_log_probs = student.gather(-1, index).log_softmax(-1)  # [N, K]
        teacher_log_probs = teacher.gather(-1, index).log_softmax(-1)
    return divergence(student_log_probs, teacher_log_probs, alpha=alpha).reshape(student_logits.shape[:-1])


def token_log_probs(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """[B, T, V] logits, [B, T] ids -> [B, T] log p(token)."""
    return logits.log_softmax(-1).gather(-1, token_ids.unsqueeze(-1)).squeeze(-1)


def sampled_token_log_ratio(student_logits: torch.Tensor, teacher_logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """[B, T] log p_student(y_t) - log p_teacher(y_t): a one-sample estimate of KL(student || teacher) per token."""
    return token_log_probs(student_logits, token_ids) - token_log_probs(teacher_logits, token_ids)


def sampled_token_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, token_ids: torch.Tensor, *, clip: float | None = None) -> torch.Tensor:
    """[B, T] surrogate whose gradient is the REINFORCE gradient of the reverse KL on the sampled tokens.

    TRL's `sampled_token` mode: detach(log ratio) * log p_student(y_t). Its value is not a
    divergence; monitor `sampled_token_log_ratio` instead. `clip` caps the log ratio (this mode's
    per-token divergence estimate) as `clip_divergence` caps the others.
    """
    student = token_log_probs(student_logits, token_ids)
    teacher = token_log_probs(teacher_logits, token_ids)
    return clip_divergence((student - teacher).detach(), clip=clip) * student


def clip_divergence(values: torch.Tensor, *, clip: float | None) -> torch.Tensor:
    """[B, T] per-token divergence capped at `clip` (OPSD's per-token clip; None: unchanged).

    A token past the cap adds `clip` to the loss and no gradient, so the few tokens where the
    teacher disagrees most (epistemic markers carry 2 to 8x the others' divergence) cannot
    dominate the update.
    """
    return values if clip is None else values.clamp(max=clip)


def weight_marker_tokens(values: torch.Tensor, marker_mask: torch.Tensor, *, weight: float) -> torch.Tensor:
    """[B, T] per-token loss with the tokens of epistemic-marker occurrences scaled by `weight`.

    `marker_mask` [B, T] is true on every piece of a marker occurrence
    (`sdlab.core.epistemic.token_marker_occurrences`), so a marker split into several BPE pieces
    is weighted whole. 0 masks the markers' divergence out of the numerator; the reduction still
    counts their positions, so the loss is the same per-token mean with those terms scaled.
    """
    return torch.where(marker_mask.bool(), values * weight, values)


def clipped_importance_weight(current_log_probs: torch.Tensor, rollout_log_probs: torch.Tensor, *, clip: float) -> torch.Tensor:
    """[B, T] min(pi_now / pi_rollout, clip), detached: corrects the distillation loss for stale rollouts (TRL's rule)."""
    log_ratio = (current_log_probs - rollout_log_probs).detach().clamp(-20.0, 20.0)
    return log_ratio.exp().clamp(max=clip)


def agreeing_rows(distill_mask: torch.Tensor, rewards: torch.Tensor, *, threshold: float) -> torch.Tensor:
    """[B] distillation row mask kept only where the rollout succeeds itself (reward >= threshold).

    A row's context is a successful sibling, so under a 0/1 answer reward a successful rollout is
    one whose final answer agrees with the context's. On a disagreeing row the teacher's signal
    is to jump to the context's answer, which the student cannot learn without the context; on
    an agreeing row the teacher can only sharpen what the student already did. Dropped rows
    count 0 under the all-rows reduction, like rows without a successful sibling.
    """
    return distill_mask * (rewards >= threshold).to(distill_mask.dtype)


def entropy_from_logits(logits: torch.Tensor, *, chunk_tokens: int = 1024) -> torch.Tensor:
    """[B, T, V] -> [B, T] entropy in nats, computed without gradient in chunks (a monitoring quantity)."""
    flat = logits.detach().reshape(-1, logits.size(-1))
    pieces = []
    for start in range(0, flat.size(0), chunk_tokens):
        log_probs = flat[start : start + chunk_tokens].float().log_softmax(-1)
        pieces.append(-(log_probs.exp() * log_probs).sum(-1))
    return torch.cat(pieces).reshape(logits.shape[:-1]) if pieces else flat.new_zeros(logits.shape[:-1])


def agg_loss(loss_mat: torch.Tensor, mask: torch.Tensor, *, mode: Reduction | str) -> torch.Tensor:
    """[B, T] per-token loss and {0, 1} mask -> scalar, by `Reduction` mode.

    An all-zero mask gives 0 (attached to the graph) rather than NaN.
    """
    mode = Reduction(mode)
    mask = mask.to(loss_mat.dtype)
    masked = loss_mat * mask
    if mode is Reduction.TOKEN_MEAN:
        return masked.sum() / mask.sum().clamp(min=1.0)
    per_sequence = masked.sum(-1) / mask.sum(-1).clamp(min=1.0)  # [B]
    if mode is Reduction.ALL_SEQUENCE_MEAN:
        return per_sequence.mean()
    active = (mask.sum(-1) > 0).to(loss_mat.dtype)  # [B]
    return (per_sequence * active).sum() / active.sum().clamp(min=1.0)


def scatter_rows(values: torch.Tensor, rows: torch.Tensor | None, batch_size: int) -> torch.Tensor:
    """[A, ...] values of batch rows `rows` -> [batch_size, ...], zero in the other rows (differentiable).

    `rows` None means `values` already has every row. Lets a per-token loss be computed on the
    rows that carry one only, then reduced exactly as over the whole batch.
    """
    if rows is None:
        return values
    return values.new_zeros((batch_size, *values.shape[1:])).index_copy(0, rows, values)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean of `values` where `mask` is true, as a float (NaN when nothing is selected)."""
    mask = mask.bool()
    count = int(mask.sum())
    return float(values.detach()[mask].float().sum() / count) if count else float("nan")


def split_by_mask(values: torch.Tensor, token_mask: torch.Tensor, marker_mask: torch.Tensor) -> dict[str, float]:
    """Split a per-token quantity (e.g. divergence) between marker tokens and the others.

    All three tensors share one shape ([B, T] or [T]); `token_mask` selects the tokens that count
    (loss mask), `marker_mask` the epistemic-marker tokens among them. Returns the mean on markers,
    the mean on the others, their ratio, the share of the total carried by markers, and the counts.
    NaN marks an undefined value (no marker token, zero total).
    """
    token_mask, marker_mask = token_mask.bool(), marker_mask.bool()
    on_markers, on_others = token_mask & marker_mask, token_mask & ~marker_mask
    marker_mean, other_mean = masked_mean(values, on_markers), masked_mean(values, on_others)
    total = float(values.detach()[token_mask].float().sum())
    marker_total = float(values.detach()[on_markers].float().sum())
    return {
        "marker_mean": marker_mean,
        "other_mean": other_mean,
        "ratio": marker_mean / other_mean if other_mean and not math.isnan(other_mean) else float("nan"),
        "marker_share": marker_total / total if total else float("nan"),
        "marker_tokens": int(on_markers.sum()),
        "other_tokens": int(on_others.sum()),
    }


def split_by_occurrence(values: torch.Tensor, occurrence: torch.Tensor) -> dict[str, float]:
    """The marker/other split per marker *occurrence* rather than per sub-token.

    `values`: [N] per-token quantity (e.g. divergence) over the tokens that count; `occurrence`:
    [N] the marker occurrence each token belongs to (ids unique over the N tokens, in token
    order within an occurrence), -1 for other tokens. A marker of several BPE pieces has its
    later pieces nearly certain for student and teacher alike, which pulls the per-sub-token
    mean down; here each occurrence counts once: by its first piece, and by the sum over its
    pieces. Ratios are to the mean over other tokens; NaN where undefined.
    """
    occurrence = occurrence.long()
    values = values.detach().float()
    others = values[occurrence < 0]
    other_mean = float(others.mean()) if others.numel() else float("nan")
    ids, first_index = [], {}
    for position, occ in enumerate(occurrence.tolist()):
        if occ >= 0 and occ not in first_index:
            first_index[occ] = position
            ids.append(occ)
    if not ids:
        first_mean = summed_mean = float("nan")
    else:
        marked = occurrence >= 0
        sums = torch.zeros(max(ids) + 1).index_add_(0, occurrence[marked], values[marked])
        first_mean = float(values[[first_index[i] for i in ids]].mean())
        summed_mean = float(sums[ids].mean())

    def ratio(value: float) -> float:
        return value / other_mean if other_mean and not math.isnan(other_mean) and not math.isnan(value) else float("nan")

    return {
        "first_piece_mean": first_mean,
        "first_piece_ratio": ratio(first_mean),
        "occurrence_sum_mean": summed_mean,
        "occurrence_sum_ratio": ratio(summed_mean),
        "occurrences": len(ids),
    }


def concat_occurrences(pieces: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate per-response occurrence ids (-1 = none), renumbering so ids stay unique."""
    out, offset = [], 0
    for piece in pieces:
        piece = piece.long()
        out.append(torch.where(piece >= 0, piece + offset, piece))
        offset += int(piece.max()) + 1 if piece.numel() and int(piece.max()) >= 0 else 0
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)
