"""Aggregating client metrics: weighted means of scalars; per-client values are not averaged."""

from __future__ import annotations

import math

from flwr.app import MetricRecord, RecordDict

# Identify a client; a mean of them means nothing.
PER_CLIENT_KEYS = frozenset({"partition-id"})


def mean_scalar_metrics(records: list[RecordDict], weighting_key: str) -> MetricRecord:
    """Weighted mean of every finite scalar metric (weights from `weighting_key`), skipping
    per-client keys and lists. Also reports how many replies were aggregated."""
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    for record in records:
        for metrics in record.metric_records.values():
            weight = float(metrics.get(weighting_key, 1))
            for key, value in metrics.items():
                if key in PER_CLIENT_KEYS or key == weighting_key or isinstance(value, list):
                    continue
                if not math.isfinite(float(value)):
                    continue
                sums[key] = sums.get(key, 0.0) + weight * float(value)
                weights[key] = weights.get(key, 0.0) + weight
    aggregated = MetricRecord({key: sums[key] / weights[key] for key in sums if weights[key] > 0})
    aggregated["num-replies"] = len(records)
    return aggregated
