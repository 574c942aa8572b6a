"""Reconstruction metrics: image similarity (torchmetrics), optimal matching, spike distances,
label accuracy and rates with Wilson confidence intervals."""

from fedsnn.metrics.images import image_scores, per_sample_scores, to_images
from fedsnn.metrics.labels import histogram, histogram_scores, round_to_total
from fedsnn.metrics.matching import identified, match_by_mse
from fedsnn.metrics.rates import (label_accuracy, mean_interval, mean_stat, rate_stat,
                                  wilson_interval)
from fedsnn.metrics.spikes import spike_l1, spike_l2

__all__ = ["histogram", "histogram_scores", "identified", "image_scores", "label_accuracy", "match_by_mse",
           "mean_interval", "mean_stat", "per_sample_scores", "rate_stat", "round_to_total",
           "spike_l1", "spike_l2", "to_images", "wilson_interval"]
