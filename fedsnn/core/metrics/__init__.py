"""Reconstruction metrics: image similarity (torchmetrics), optimal matching, spike distances,
identification (nearest neighbour in a pool), label accuracy and rates with Wilson confidence
intervals (Wilson, and
clustered by client)."""

from fedsnn.core.metrics.clustered import clustered_rate_stat
from fedsnn.core.metrics.identification import identified, nearest_in_pool
from fedsnn.core.metrics.images import image_scores, per_sample_scores, to_images
from fedsnn.core.metrics.labels import histogram, histogram_scores, round_to_total
from fedsnn.core.metrics.matching import match_by_mse
from fedsnn.core.metrics.rates import (label_accuracy, mean_interval, mean_stat, number_interval,
                                  percent_interval, rate_stat, wilson_interval)
from fedsnn.core.metrics.spikes import spike_l1, spike_l2

__all__ = ["clustered_rate_stat", "histogram", "histogram_scores", "identified", "image_scores", "label_accuracy",
           "match_by_mse", "mean_interval", "mean_stat", "nearest_in_pool", "per_sample_scores",
           "rate_stat", "round_to_total", "spike_l1", "spike_l2", "to_images", "wilson_interval"]
