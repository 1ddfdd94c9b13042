"""Fairness of a per-backend distribution: Jain's index, max/min, CV, chi-square vs uniform.

Pure functions over counts. The chi-square p-value uses the regularized upper incomplete
gamma function (Numerical Recipes' series and continued fraction), so no SciPy is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Fairness:
    backends: int
    total: int
    jain: float  # (sum x)^2 / (n * sum x^2); 1.0 is perfectly even
    max_min: float  # largest / smallest count (inf if a backend got nothing)
    cv: float  # coefficient of variation: stdev / mean (population)
    chi2: float  # Pearson's statistic against a uniform split
    p_uniform: float  # P(chi2 >= observed | uniform multinomial)


def fairness(counts: Sequence[int]) -> Fairness:
    n = len(counts)
    if n == 0:
        raise ValueError("no backends")
    total = sum(counts)
    if total == 0:
        raise ValueError("no requests")
    mean = total / n
    squares = sum(c * c for c in counts)
    jain = total * total / (n * squares)
    smallest = min(counts)
    max_min = max(counts) / smallest if smallest else math.inf
    cv = math.sqrt(max(squares / n - mean * mean, 0.0)) / mean
    chi2 = sum((c - mean) ** 2 for c in counts) / mean
    p = chi2_sf(chi2, n - 1) if n > 1 else 1.0
    return Fairness(n, total, jain, max_min, cv, chi2, p)


def chi2_sf(x: float, dof: int) -> float:
    """P(X >= x) for X ~ chi-square with `dof` degrees of freedom."""
    if dof <= 0:
        raise ValueError("dof must be positive")
    if x <= 0:
        return 1.0
    return _gamma_q(dof / 2.0, x / 2.0)


def _gamma_q(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x)."""
    if x < a + 1.0:
        return 1.0 - _gamma_p_series(a, x)
    return _gamma_q_continued_fraction(a, x)


def _gamma_p_series(a: float, x: float) -> float:
    term = total = 1.0 / a
    ap = a
    for _ in range(10_000):
        ap += 1.0
        term *= x / ap
        total += term
        if abs(term) < abs(total) * 1e-15:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_q_continued_fraction(a: float, x: float) -> float:
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h
