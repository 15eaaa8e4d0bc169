"""Small-sample statistics for comparing runs: intervals, exact tests, bootstrap.

Evaluation runs are small (tens of cases per task, a few samples each) and
rates sit near 0% or 100% more often than not. The textbook Wald interval
``p +- z*sqrt(p(1-p)/n)`` collapses to zero width at 0% and 100% and
under-covers badly for small n, which would make a CI gate fire on noise. So:

* single rates use the **Wilson score interval** (good coverage for small n,
  never leaves [0, 1], non-degenerate at 0/n and n/n);
* a difference of two independent rates uses **Newcombe's hybrid score
  interval** (Newcombe 1998, method 10), built from the two Wilson intervals;
* a difference of two rates measured on the *same* cases (paired samples) uses
  **Newcombe's paired square-and-add interval** (Newcombe 1998b, method 10,
  with his continuity-adjusted correlation term). Chosen over a Wald interval
  with continuity correction because the Wald form is again degenerate when
  one run is at 100% and overshoots [-1, 1] on small tables;
* whether paired outcomes changed at all is tested with the **exact McNemar
  test**: a two-sided binomial test on the discordant pairs (no chi-square
  approximation, which is poor for the handful of discordant pairs we see);
* differences of latency percentiles use a **percentile bootstrap**
  (seeded, so the same runs always give the same interval: a CI gate must not
  flip between two invocations on identical data).

Everything here is a pure function of its arguments; no third-party packages.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

Z95 = 1.959963984540054  # two-sided 95% standard normal quantile


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion ``successes / n``.

    Why Wilson: it keeps nominal coverage for small n and extreme rates and,
    unlike the Wald interval, does not collapse to a point at 0/n or n/n.
    With no data (n == 0) nothing is known, so the interval is (0, 1).
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    # Clamp float dust so 0/n has lower bound exactly 0 and n/n upper bound exactly 1.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def newcombe_diff_interval(s1: int, n1: int, s2: int, n2: int, z: float = 1.96) -> tuple[float, float]:
    """Interval for ``p1 - p2`` of two independent proportions (Newcombe 1998, method 10).

    "Square and add" the distances from each estimate to its Wilson limits:
    the interval inherits Wilson's small-sample behaviour, stays inside
    [-1, 1], and needs nothing but the two Wilson intervals. Example from the
    paper: 56/70 vs 48/80 gives (0.0524, 0.3339).
    """
    p1 = s1 / n1 if n1 else 0.0
    p2 = s2 / n2 if n2 else 0.0
    l1, u1 = wilson_interval(s1, n1, z)
    l2, u2 = wilson_interval(s2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, low), min(1.0, high)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pair counts ``b`` and ``c``.

    Under "no change" each discordant pair is equally likely to go either
    way, so ``b ~ Binomial(b + c, 1/2)``; the p-value is twice the smaller
    tail, capped at 1. Exact because with few discordant pairs the
    chi-square approximation is far off. No discordant pairs -> p = 1.
    """
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be >= 0")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    # Exact integer arithmetic up to the final division: no underflow for big n.
    return min(1.0, 2 * tail / 2**n)


def paired_diff_interval(both: int, only_first: int, only_second: int, neither: int,
                         z: float = 1.96) -> tuple[float, float]:
    """Interval for ``p1 - p2`` when both rates were measured on the same n items.

    Arguments are the paired 2x2 table: ``both`` = success in 1 and 2,
    ``only_first`` = success in 1 only, ``only_second`` = success in 2 only,
    ``neither`` = failure in both. ``p1 - p2 = (only_first - only_second) / n``.

    Method: Newcombe (1998b) method 10, square-and-add of the Wilson limits
    of p1 and p2 with a correlation correction phi (continuity-adjusted as in
    the paper: ``ad - bc`` is shrunk by n/2 when positive). Pairing makes the
    interval narrower when the runs agree case by case, which is exactly the
    information an unpaired interval throws away.
    """
    a, b, c, d = both, only_first, only_second, neither
    n = a + b + c + d
    if n == 0:
        return -1.0, 1.0
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n, z)
    l2, u2 = wilson_interval(a + c, n, z)
    product = (a + b) * (c + d) * (a + c) * (b + d)
    phi = 0.0
    if product > 0:
        cross = a * d - b * c
        if cross > n / 2:
            phi = (cross - n / 2) / math.sqrt(product)
        elif cross < 0:
            phi = cross / math.sqrt(product)
    diff = p1 - p2
    dl = (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2
    du = (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2
    return max(-1.0, diff - math.sqrt(max(dl, 0.0))), min(1.0, diff + math.sqrt(max(du, 0.0)))


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); the same definition as the
    report uses (it imports this one), so compare/gate print the
    same p50/p95 as `harness report`. None for no data."""
    if not values:
        return None
    ordered = sorted(values)
    return _sorted_percentile(ordered, q)


def _sorted_percentile(ordered: Sequence[float], q: float) -> float:
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def bootstrap_percentile_diffs(
    a: Sequence[float],
    b: Sequence[float],
    qs: Sequence[float],
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[float, tuple[float, float, float]]:
    """:func:`bootstrap_percentile_diff` for several percentiles from the same resamples.

    Resampling dominates the cost, so p50 and p95 share one set of draws.
    Returns ``{q: (delta, low, high)}``.
    """
    if not a or not b:
        raise ValueError("bootstrap needs at least one value on each side")
    rng = random.Random(seed)
    sorted_a, sorted_b = sorted(a), sorted(b)
    na, nb = len(a), len(b)
    draws: dict[float, list[float]] = {q: [] for q in qs}
    for _ in range(n_resamples):
        ra = sorted(rng.choices(sorted_a, k=na))
        rb = sorted(rng.choices(sorted_b, k=nb))
        for q in qs:
            draws[q].append(_sorted_percentile(rb, q) - _sorted_percentile(ra, q))
    tail = (1.0 - confidence) / 2 * 100
    result = {}
    for q in qs:
        deltas = sorted(draws[q])
        delta = _sorted_percentile(sorted_b, q) - _sorted_percentile(sorted_a, q)
        result[q] = (delta, _sorted_percentile(deltas, tail), _sorted_percentile(deltas, 100 - tail))
    return result


def bootstrap_percentile_diff(
    a: Sequence[float],
    b: Sequence[float],
    q: float,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile-bootstrap 95% interval for ``percentile(b, q) - percentile(a, q)``.

    Latency percentiles have no usable closed-form interval (skewed, often
    multi-modal: cache hits, model loads), so resample each side independently
    with replacement and take the 2.5th/97.5th percentiles of the resampled
    differences. Seeded with ``random.Random(seed)``: identical inputs always
    give the identical interval. Returns ``(delta, low, high)`` where delta is
    the observed difference (b minus a).
    """
    return bootstrap_percentile_diffs(a, b, [q], n_resamples, seed)[q]


__all__ = [
    "Z95",
    "bootstrap_percentile_diff",
    "bootstrap_percentile_diffs",
    "mcnemar_exact",
    "newcombe_diff_interval",
    "paired_diff_interval",
    "percentile",
    "wilson_interval",
]
