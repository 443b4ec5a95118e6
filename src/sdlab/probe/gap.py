"""Estimators for the probe: how much information a teacher context carries, and where
the self-distillation divergence sits. Pure functions on per-response numbers.

Information gap (docs/measurements.md, "Probe"). For problem x_i with responses
y_ij ~ q(.|x_i) (j = 1..n) and y'_ij ~ q(.|x_i, c_i):

    H(y|x)     ~  H_i   = 1/n sum_j  -log q(y_ij  | x_i)          (nats per response)
    H(y|x,c)   ~  H_i^c = 1/n sum_j  -log q(y'_ij | x_i, c_i)
    gap        =  1/P sum_i (H_i - H_i^c),  SE = std_i(H_i - H_i^c) / sqrt(P)

Each entropy is a Monte-Carlo mean of -log q over samples of *its own* distribution, so it is
unbiased for the entropy of that distribution; the gap is I(y;c|x) only if the unguided
distribution is the mixture of the guided ones, otherwise a difference of conditional
entropies (it can be negative). Per token: h_i = sum_j -log q(y_ij) / sum_j |y_ij| (a ratio
estimator of the entropy rate). `q` is the distribution that produced the samples (by
default the temperature / top-k / top-p sampler, see `sdlab.probe.scoring.sampling_log_probs`);
scoring them under the raw model p instead gives the cross-entropy H(q, p) = H(q) + KL(q||p),
biased upwards by KL(q||p), which differs between contexts.

Divergence split: per-token divergences of the student's own responses are pooled over
all tokens; `sdlab.core.losses.split_by_mask` splits them into marker and other tokens, and
`sdlab.core.losses.split_by_occurrence` per marker occurrence (its first piece, and its pieces summed);
standard errors come from a bootstrap over problems (responses of one problem are not independent).
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence

import torch

from sdlab.core.losses import concat_occurrences, split_by_mask, split_by_occurrence


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (sample std / sqrt(n)); SE is NaN for fewer than 2 values."""
    if not values:
        return float("nan"), float("nan")
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")


def entropy_per_problem(nll: Sequence[Sequence[float]], tokens: Sequence[Sequence[int]]) -> tuple[list[float], list[float]]:
    """Per problem: (mean NLL per response, NLL per token = total NLL / total tokens)."""
    per_response = [sum(row) / len(row) for row in nll]
    per_token = [sum(row) / max(1, sum(lengths)) for row, lengths in zip(nll, tokens)]
    return per_response, per_token


def information_gap(
    baseline_nll: Sequence[Sequence[float]],
    baseline_tokens: Sequence[Sequence[int]],
    context_nll: Sequence[Sequence[float]],
    context_tokens: Sequence[Sequence[int]],
) -> dict[str, tuple[float, float]]:
    """H(y|x), H(y|x,c) and their difference, per response and per token, each as (mean, SE).

    Inputs are [problem][sample] sequence NLLs (nats) and response lengths; both sides are
    paired by problem (same problems, same order), so the SE of the gap uses paired differences.
    """
    if len(baseline_nll) != len(context_nll):
        raise ValueError("information_gap: baseline and context must cover the same problems")
    h_x, rate_x = entropy_per_problem(baseline_nll, baseline_tokens)
    h_xc, rate_xc = entropy_per_problem(context_nll, context_tokens)
    return {
        "entropy": mean_se(h_x),
        "entropy_context": mean_se(h_xc),
        "gap": mean_se([a - b for a, b in zip(h_x, h_xc)]),
        "entropy_per_token": mean_se(rate_x),
        "entropy_context_per_token": mean_se(rate_xc),
        "gap_per_token": mean_se([a - b for a, b in zip(rate_x, rate_xc)]),
    }


SPLIT_KEYS = ("mean", "marker_mean", "other_mean", "ratio", "marker_share")
OCCURRENCE_KEYS = ("first_piece_ratio", "occurrence_sum_ratio")


def divergence_split(values: torch.Tensor, markers: torch.Tensor) -> dict[str, float]:
    """Token-pooled divergence: overall mean and its split between marker and other tokens.

    `values`: [N] over every scored token; `markers`: [N] bool (marker tokens), or the marker
    occurrence of each token (long, unique ids, -1 for other tokens; `sdlab.core.losses.concat_occurrences`),
    which adds the split per occurrence (`split_by_occurrence`: first piece, summed over pieces).
    mean = (n_m * marker_mean + n_o * other_mean) / N and marker_share = n_m * marker_mean /
    (N * mean): the per-token split adds up.
    """
    occurrence = None if markers.dtype == torch.bool else markers.long()
    marker_mask = markers if occurrence is None else occurrence >= 0
    everything = torch.ones_like(marker_mask, dtype=torch.bool)
    split = split_by_mask(values, everything, marker_mask)
    split["mean"] = float(values.float().mean()) if values.numel() else float("nan")
    if occurrence is not None:
        split.update(split_by_occurrence(values, occurrence))
    return split


def _pooled(pieces: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(pieces) if pieces[0].dtype == torch.bool else concat_occurrences(pieces)


def divergence_split_by_problem(
    values: Sequence[Sequence[torch.Tensor]], markers: Sequence[Sequence[torch.Tensor]], *, reps: int = 200, seed: int = 0
) -> dict[str, float | int]:
    """`divergence_split` over [problem][response] per-token tensors (markers: bool masks or
    per-response occurrence ids), plus `<key>_se` for each split key from a bootstrap that
    resamples whole problems."""
    per_problem = [(torch.cat(list(v)), _pooled(list(m))) for v, m in zip(values, markers)]
    all_values = torch.cat([v for v, _ in per_problem])
    all_markers = _pooled([m for _, m in per_problem])
    result: dict[str, float | int] = dict(divergence_split(all_values, all_markers))
    keys = SPLIT_KEYS + (OCCURRENCE_KEYS if all_markers.dtype != torch.bool else ())
    rng = random.Random(seed)
    draws: dict[str, list[float]] = {key: [] for key in keys}
    for _ in range(reps if len(per_problem) > 1 else 0):
        picks = [per_problem[rng.randrange(len(per_problem))] for _ in per_problem]
        sample = divergence_split(torch.cat([v for v, _ in picks]), _pooled([m for _, m in picks]))
        for key in keys:
            if not math.isnan(sample[key]):
                draws[key].append(sample[key])
    for key in keys:
        result[f"{key}_se"] = statistics.stdev(draws[key]) if len(draws[key]) > 1 else float("nan")
    return result
