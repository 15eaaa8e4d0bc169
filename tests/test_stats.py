"""harness.stats against textbook values and basic properties."""

from __future__ import annotations

import random

import pytest

from harness.stats import (
    bootstrap_percentile_diff,
    bootstrap_percentile_diffs,
    mcnemar_exact,
    newcombe_diff_interval,
    paired_diff_interval,
    percentile,
    wilson_interval,
)


def test_wilson_textbook_value():
    # Newcombe (1998) / Altman et al., Statistics with Confidence: 81/263 -> 0.2553 to 0.3662.
    low, high = wilson_interval(81, 263)
    assert low == pytest.approx(0.2553, abs=1e-4)
    assert high == pytest.approx(0.3662, abs=1e-4)


def test_wilson_extremes_are_not_degenerate():
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(10, 10)
    assert high == 1.0 and low == pytest.approx(0.7225, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_newcombe_independent_known_example():
    # Newcombe (1998), method 10, example: 56/70 vs 48/80 -> 0.0524 to 0.3339.
    low, high = newcombe_diff_interval(56, 70, 48, 80)
    assert low == pytest.approx(0.0524, abs=1e-4)
    assert high == pytest.approx(0.3339, abs=1e-4)
    # Antisymmetric when the sides swap.
    low2, high2 = newcombe_diff_interval(48, 80, 56, 70)
    assert (low2, high2) == pytest.approx((-high, -low))


def test_mcnemar_exact_known_values():
    assert mcnemar_exact(1, 9) == pytest.approx(0.021484375)  # 2 * 11 / 1024
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 30) == pytest.approx(2 * 0.5**30)
    assert mcnemar_exact(0, 2) == 0.5  # two flips out of two is not evidence
    assert mcnemar_exact(400, 600) < 1e-9  # big n: exact integer arithmetic, no overflow


def test_paired_interval_known_example():
    # Fagerland, Lydersen & Laake, Statistical Analysis of Contingency Tables, ch. 8:
    # Bentur et al. (2009) table [[1, 1], [7, 12]], Newcombe square-and-add -> -0.5069 to -0.0256.
    low, high = paired_diff_interval(1, 1, 7, 12)
    assert low == pytest.approx(-0.5069, abs=1e-4)
    assert high == pytest.approx(-0.0256, abs=1e-4)


def test_paired_interval_properties():
    # No change at all: centred on zero.
    low, high = paired_diff_interval(30, 0, 0, 10)
    assert low < 0 < high
    # Contains the estimate, stays inside [-1, 1], narrower than the unpaired interval
    # when the two runs agree case by case.
    both, first, second, neither = 30, 2, 10, 8
    n = both + first + second + neither
    low, high = paired_diff_interval(both, first, second, neither)
    estimate = (first - second) / n
    assert -1 <= low <= estimate <= high <= 1
    u_low, u_high = newcombe_diff_interval(both + first, n, both + second, n)
    assert high - low < u_high - u_low
    assert paired_diff_interval(0, 0, 0, 0) == (-1.0, 1.0)


def test_bootstrap_is_deterministic_and_covers_a_clear_shift():
    rng = random.Random(42)
    a = [1.0 + rng.random() for _ in range(60)]
    b = [x + 0.5 for x in a]
    first = bootstrap_percentile_diff(a, b, 50, n_resamples=500, seed=7)
    second = bootstrap_percentile_diff(a, b, 50, n_resamples=500, seed=7)
    assert first == second
    delta, low, high = first
    assert delta == pytest.approx(0.5)
    assert low <= 0.5 <= high and low > 0  # clearly above zero
    other_seed = bootstrap_percentile_diff(a, b, 50, n_resamples=500, seed=8)
    assert other_seed[0] == delta  # the observed delta never depends on the seed
    both = bootstrap_percentile_diffs(a, b, (50, 95), n_resamples=500, seed=7)
    assert both[50] == first


def test_bootstrap_no_shift_interval_contains_zero():
    rng = random.Random(1)
    a = [rng.gauss(2.0, 0.3) for _ in range(80)]
    b = [rng.gauss(2.0, 0.3) for _ in range(80)]
    _, low, high = bootstrap_percentile_diff(a, b, 95, n_resamples=500)
    assert low < 0 < high
    with pytest.raises(ValueError):
        bootstrap_percentile_diff([], b, 50)


def test_percentile_is_linear_interpolation_between_ranks():
    """The definition reports, compare and gate share (numpy's default, 'linear')."""
    values = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6]  # sorted: 1, 1.5, 2.6, 3, 4, 9
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 9.0
    assert percentile(values, 50) == pytest.approx(2.8)  # halfway between 2.6 and 3.0
    assert percentile(values, 95) == pytest.approx(7.75)  # position 4.75: 4 + 0.75 * 5
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None