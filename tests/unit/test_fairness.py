"""Fairness statistics against known values."""

from __future__ import annotations

import math
import random

import pytest

from harness.fairness import chi2_sf, fairness


@pytest.mark.parametrize(
    ("x", "dof", "expected"),
    [
        (3.841458820694124, 1, 0.05),  # the textbook 5% critical values
        (5.991464547107979, 2, 0.05),
        (18.307038053275146, 10, 0.05),
        (23.209251158954356, 10, 0.01),
        (10.0, 10, 0.4404932850652136),  # chi2.sf(10, 10) = e^-5 * sum_{k<5} 5^k / k!
        (0.0, 3, 1.0),
        (200.0, 9, 0.0),
    ],
)
def test_chi2_survival_function(x: float, dof: int, expected: float) -> None:
    assert chi2_sf(x, dof) == pytest.approx(expected, abs=1e-9)


def test_perfectly_even_round_robin() -> None:
    f = fairness([100, 100, 100, 100])
    assert (f.jain, f.max_min, f.cv, f.chi2, f.p_uniform) == (1.0, 1.0, 0.0, 0.0, 1.0)


def test_skewed_distribution() -> None:
    f = fairness([300, 100])
    assert f.jain == pytest.approx(400**2 / (2 * (300**2 + 100**2)))
    assert f.max_min == 3.0
    assert f.cv == pytest.approx(0.5)
    assert f.chi2 == pytest.approx(100.0)
    assert f.p_uniform < 1e-20


def test_a_starved_backend() -> None:
    assert fairness([10, 0, 10]).max_min == math.inf


def test_random_assignment_matches_the_design_figures() -> None:
    """10,000 connections over 10 backends at random: Jain about 0.9991, p not small."""
    rng = random.Random(42)
    counts = [0] * 10
    for _ in range(10_000):
        counts[rng.randrange(10)] += 1
    f = fairness(counts)
    assert 0.997 < f.jain < 1.0
    assert f.p_uniform > 0.001
    assert f.max_min < 1.25


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        fairness([])
    with pytest.raises(ValueError):
        fairness([0, 0])
