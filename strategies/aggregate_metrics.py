"""Aggregating client metrics: weighted means of scalars; per-client values are not averaged."""

from __future__ import annotations

import math
from logging import WARNING

from flwr.app import MetricRecord, RecordDict
from flwr.common.logger import log

from fedsnn.core.protocol import per_client_keys

# Identify a client or its samples; a mean of them means nothing.
PER_CLIENT_KEYS = per_client_keys()


def mean_scalar_metrics(records: list[RecordDict], weighting_key: str) -> MetricRecord:
    """Weighted mean of every finite scalar metric (weights from `weighting_key`), skipping
    per-client keys. A non-finite or list value of any other key is left out of its mean, with
    a log line. Also reports how many replies were aggregated."""
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    dropped: dict[str, int] = {}
    for record in records:
        for metrics in record.metric_records.values():
            weight = float(metrics.get(weighting_key, 1))
            for key, value in metrics.items():
                if key in PER_CLIENT_KEYS or key == weighting_key:
                    continue
                if isinstance(value, list) or not math.isfinite(float(value)):
                    dropped[key] = dropped.get(key, 0) + 1
                    continue
                sums[key] = sums.get(key, 0.0) + weight * float(value)
                weights[key] = weights.get(key, 0.0) + weight
    for key, count in dropped.items():
        log(WARNING, "metrics: %d of %d replies report %r as a list or NaN/Inf; left out of its "
            "mean", count, len(records), key)
    aggregated = MetricRecord({key: sums[key] / weights[key] for key in sums if weights[key] > 0})
    aggregated["num-replies"] = len(records)
    return aggregated
