"""Rates and means with 95 % confidence intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


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


def mean_interval(values: Sequence[float], *, z: float = 1.959964) -> tuple[float, float, float]:
    """Mean of `values` and its normal-approximation interval mean ± z·sd/sqrt(n) (non-finite
    values are left out; NaNs for no values).

    Example:
        >>> tuple(round(v, 3) for v in mean_interval([1.0, 2.0, 3.0]))
        (2.0, 0.868, 3.132)
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return (math.nan, math.nan, math.nan)
    mean = sum(finite) / len(finite)
    if len(finite) == 1:
        return (mean, mean, mean)
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
    half = z * sd / math.sqrt(len(finite))
    return (mean, mean - half, mean + half)


def rate_stat(successes: int, trials: int) -> dict[str, float]:
    """A rate as {"value", "low", "high"} (Wilson 95 %), the form results files keep.

    Example:
        >>> {k: round(v, 3) for k, v in rate_stat(88, 100).items()}
        {'value': 0.88, 'low': 0.802, 'high': 0.93}
    """
    low, high = wilson_interval(successes, trials)
    return {"value": successes / trials if trials else math.nan, "low": low, "high": high}


def mean_stat(values: Sequence[float], *, std: bool = False) -> dict[str, float]:
    """A mean as {"value", "low", "high"} (normal 95 %), with the sample "std" if asked.

    Example:
        >>> mean_stat([1.0, 2.0, 3.0], std=True)["std"]
        1.0
    """
    mean, low, high = mean_interval(values)
    stat = {"value": mean, "low": low, "high": high}
    if std:
        finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        stat["std"] = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
    return stat


def percent_interval(stat: dict[str, float]) -> str:
    """A `rate_stat` as "value [low, high]" in percent, one decimal.

    Example:
        >>> percent_interval(rate_stat(88, 100))
        '88.0 [80.2, 93.0]'
    """
    return f"{100 * stat['value']:.1f} [{100 * stat['low']:.1f}, {100 * stat['high']:.1f}]"


def number_interval(stat: dict[str, float], digits: int) -> str:
    """A `mean_stat` as "value [low, high]" with `digits` decimals ("–" when there is none)."""
    if stat["value"] is None or not math.isfinite(stat["value"]):
        return "–"
    return f"{stat['value']:.{digits}f} [{stat['low']:.{digits}f}, {stat['high']:.{digits}f}]"


def label_accuracy(predicted: Sequence[int] | torch.Tensor, truth: Sequence[int] | torch.Tensor) -> float:
    """Fraction of predicted labels equal to the true ones (NaN for none).

    Example:
        >>> label_accuracy([1, 2, 3, 4], [1, 2, 0, 4])
        0.75
    """
    predicted, truth = torch.as_tensor(predicted).flatten(), torch.as_tensor(truth).flatten()
    if predicted.shape != truth.shape:
        raise ValueError(f"Expected as many predicted labels as true ones, got {len(predicted)} "
                         f"and {len(truth)}")
    return float((predicted == truth).float().mean()) if len(truth) else math.nan
