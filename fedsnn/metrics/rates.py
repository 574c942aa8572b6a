"""Rates with confidence intervals."""

from __future__ import annotations

import math


def wilson_interval(successes: int, trials: int, *, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a binomial rate (95 % by default).

    Example:
        >>> tuple(round(v, 3) for v in wilson_interval(88, 100))
        (0.802, 0.93)
    """
    if trials <= 0:
        return (math.nan, math.nan)
    if not 0 <= successes <= trials:
        raise ValueError(f"Expected 0 <= successes <= trials, got {successes} of {trials}")
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))
