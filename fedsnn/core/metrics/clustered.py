"""Rates pooled over clients, with intervals that respect the clustering of images by client.

Images of one client share its model state, its batch and its attack run, so they are not
independent trials: a Wilson interval over all images is too narrow when clients differ. The
interval here resamples whole clients (a percentile bootstrap over clusters, scipy's
`stats.bootstrap`) and is never narrower than the Wilson interval of the pooled counts (with a
handful of clients the bootstrap alone can collapse to a point).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from fedsnn.core.metrics.rates import wilson_interval


def clustered_rate_stat(successes: Sequence[int], trials: Sequence[int], *,
                        confidence: float = 0.95, resamples: int = 2000,
                        seed: int = 0) -> dict[str, float]:
    """A rate pooled over clusters as {"value", "low", "high", "clusters", "successes",
    "trials"}: value = Σ successes / Σ trials, the interval a cluster bootstrap widened to at
    least the pooled Wilson interval.

    Args:
        successes: per client, the images that succeeded (e.g. identified).
        trials: per client, the images attacked (a timed-out attack's images included).
        confidence: two-sided level of the interval.
        resamples: bootstrap resamples of the clients.
        seed: the bootstrap's generator seed (the interval is reproducible).

    Example:
        >>> s = clustered_rate_stat([8, 0], [8, 8])
        >>> s["value"], s["clusters"], s["low"] < 0.3 and s["high"] > 0.7
        (0.5, 2, True)
    """
    s = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    if s.shape != n.shape:
        raise ValueError(f"Expected one success count per client, got {s.shape} and {n.shape}")
    if np.any(s < 0) or np.any(s > n):
        raise ValueError("Expected 0 <= successes <= trials for every client")
    keep = n > 0
    s, n = s[keep], n[keep]
    total_s, total_n = int(s.sum()), int(n.sum())
    low, high = wilson_interval(total_s, total_n, z=float(stats.norm.ppf(0.5 + confidence / 2)))
    stat = {"value": total_s / total_n if total_n else math.nan, "low": low, "high": high,
            "clusters": int(keep.sum()), "successes": total_s, "trials": total_n}
    if len(s) >= 2 and np.ptp(s / n) > 0:
        result = stats.bootstrap((s, n), _pooled_rate,
                                 paired=True, vectorized=True, confidence_level=confidence,
                                 n_resamples=resamples, method="percentile",
                                 random_state=np.random.default_rng(seed))
        stat["low"] = min(low, float(result.confidence_interval.low))
        stat["high"] = max(high, float(result.confidence_interval.high))
    return stat


def _pooled_rate(successes: np.ndarray, trials: np.ndarray, axis: int = -1) -> np.ndarray:
    return successes.sum(axis=axis) / trials.sum(axis=axis)
