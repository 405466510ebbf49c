"""Small, exact statistics for the detector: Poisson and binomial tails, median and MAD.

Everything works in log space where a probability can fall below the smallest float (a viral
burst against a baseline of 2 has a tail probability far below 1e-300), and every loop is
bounded, so no input can hang the detector.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MAD_TO_SD = 1.4826  # a normal distribution's standard deviation is 1.4826 × its MAD


def log_poisson_tail(count: int, mean: float) -> float:
    """ln P(X ≥ count) for X ~ Poisson(mean), exact far below the smallest float (viral bursts)."""
    if count <= 0:
        return 0.0
    if mean <= 0:
        return -math.inf
    if count <= mean:  # the tail is at least ~1/2: 1 - CDF is accurate
        cdf = sum(math.exp(k * math.log(mean) - mean - math.lgamma(k + 1)) for k in range(count))
        return math.log(max(1.0 - cdf, 1e-300))
    # Beyond the mean each term is the previous times mean/(k+1) < 1: sum the ratios, add the logs.
    log_first = count * math.log(mean) - mean - math.lgamma(count + 1)
    ratio_sum, ratio, k = 1.0, 1.0, count
    while ratio > 1e-17 * ratio_sum:
        k += 1
        ratio *= mean / k
        ratio_sum += ratio
    return min(0.0, log_first + math.log(ratio_sum))


def log_poisson_cdf(count: int, mean: float) -> float:
    """ln P(X ≤ count) for X ~ Poisson(mean): how unlikely so few mentions are (a volume drop)."""
    if count < 0:
        return -math.inf
    if mean <= 0:
        return 0.0
    if count >= mean:  # at least ~1/2: not a drop worth an exact figure
        return math.log(max(1.0 - math.exp(log_poisson_tail(count + 1, mean)), 1e-300))
    # Below the mean the terms grow with k: sum the ratios down from the last one, add the logs.
    log_last = count * math.log(mean) - mean - math.lgamma(count + 1)
    ratio_sum, ratio = 1.0, 1.0
    for k in range(count, 0, -1):
        ratio *= k / mean
        ratio_sum += ratio
        if ratio < 1e-17 * ratio_sum:
            break
    return min(0.0, log_last + math.log(ratio_sum))


def poisson_tail(count: int, mean: float) -> float:
    """P(X ≥ count) for X ~ Poisson(mean) (0.0 once it is below the smallest float)."""
    return math.exp(log_poisson_tail(count, mean))


def log_binomial_tail(k: int, n: int, p: float) -> float:
    """ln P(X ≥ k) for X ~ Binomial(n, p), summed in log space (n up to a few thousand)."""
    if k <= 0:
        return 0.0
    if k > n:
        return -math.inf
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    if k > n * p:  # beyond the mean each term is the previous times (n-j)/(j+1) · p/q < 1: sum the ratios, add the logs
        log_first = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * lp + (n - k) * lq
        odds = math.exp(lp - lq)
        ratio_sum, ratio = 1.0, 1.0
        for j in range(k, n):
            ratio *= (n - j) / (j + 1) * odds
            ratio_sum += ratio
            if ratio < 1e-17 * ratio_sum:
                break
        return min(0.0, log_first + math.log(ratio_sum))
    log_terms = [
        math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * lp + (n - j) * lq
        for j in range(k, n + 1)
    ]
    top = max(log_terms)
    return min(0.0, top + math.log(math.fsum(math.exp(t - top) for t in log_terms)))


def median(values: Sequence[float]) -> float:
    """The median (0.0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    mid = len(ordered) // 2
    return float(ordered[mid]) if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def mad(values: Sequence[float], centre: float | None = None) -> float:
    """Median absolute deviation from `centre` (default: the median)."""
    if not values:
        return 0.0
    c = median(values) if centre is None else centre
    return median([abs(v - c) for v in values])
