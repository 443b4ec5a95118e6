"""Statistics of scores: pass@k, avg@k, means with Student-t 95% intervals. Pure Python (no
torch), so reports and result tables load them without the training stack."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import fmean, stdev

# Two-sided 95% Student-t critical values for 1..9 degrees of freedom; from 10 on the
# Cornish-Fisher expansion below is within 1e-3 of the exact quantile.
_T95_SMALL_DF = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262)
_Z975 = 1.959964


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of Chen et al. (2021): 1 - C(n-c, k) / C(n, k), with n samples of
    which c are correct, computed as a product so large n does not overflow."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def avg_at_k(correct: Sequence[bool]) -> float:
    """Mean correctness over one problem's k samples (avg@k before averaging over problems)."""
    if not correct:
        raise ValueError("avg_at_k needs at least one sample")
    return sum(map(bool, correct)) / len(correct)


def t_critical_95(df: int) -> float:
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T95_SMALL_DF):
        return _T95_SMALL_DF[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2) + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)


FRACTION = (0.0, 1.0)


def mean_and_ci95(values: Sequence[float], *, within: tuple[float, float] | None = None) -> tuple[float, float, float]:
    """(mean, low, high): Student-t 95% interval of the mean, treating values as independent.

    Pass per-problem scores, not samples: a problem's samples are correlated, so the problem
    is the unit. With fewer than two values the interval is unknown (nan, nan). `within` clips
    the interval to the range the quantity can take: over 3 seeds a t-interval of a pass rate
    reached 1.10, which no pass rate can.
    """
    if not values:
        raise ValueError("mean_and_ci95 needs at least one value")
    mean = fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = t_critical_95(len(values) - 1) * stdev(values) / math.sqrt(len(values))
    low, high = mean - half, mean + half
    if within is not None:
        low, high = max(low, within[0]), min(high, within[1])
    return mean, low, high


def problem_mean(values_per_problem: Sequence[Sequence[float]]) -> float:
    """Average within each problem, then over problems (how the study reports lengths and markers)."""
    if not values_per_problem or not all(values_per_problem):
        raise ValueError("problem_mean needs at least one problem and one value per problem")
    return fmean(fmean(values) for values in values_per_problem)
