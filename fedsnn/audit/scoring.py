"""Scoring a reconstruction against the ground truth (the scorer's side, never the attacker's):
match reconstructed images to the originals by an optimal assignment, then per sample MSE / SSIM
/ PSNR, the judge's label and the inferred label."""

from __future__ import annotations

from typing import Any

import torch

from attacks import Reconstruction
from fedsnn.audit.baselines import Predict
from fedsnn.core.metrics import match_by_mse, per_sample_scores, to_images


def score_images(reconstruction: Reconstruction, x: torch.Tensor, y: torch.Tensor,
                 predict: Predict | None) -> tuple[list[dict[str, Any]], torch.Tensor]:
    """Per-sample scores of a reconstruction of batch (x, y), matched to it by an optimal
    assignment, and judged by `predict` (None: no judge, its fields are None); and the matched
    images. An unusable reconstruction (wrong shape, non-finite) is scored as a black guess."""
    images = to_images(reconstruction.inputs)
    if images.shape != x.shape or not torch.isfinite(images).all():
        images = torch.zeros_like(x)  # nothing usable came back: scored as a black guess
    order = match_by_mse(images, x) if len(x) > 1 else torch.zeros(1, dtype=torch.long)
    matched = images[order]
    labels = reconstruction.labels[order] if len(reconstruction.labels) == len(x) else \
        torch.full_like(y, -1)
    scores = per_sample_scores(matched, x)
    predicted = predict(matched) if predict is not None else None
    rows = [{"true-label": int(y[i]), "inferred-label": int(labels[i]),
             "judge-label": int(predicted[i]) if predicted is not None else None,
             "success": bool(predicted[i] == y[i]) if predicted is not None else None,
             "label-correct": bool(labels[i] == y[i]),
             **{k: float(v[i]) for k, v in scores.items()}} for i in range(len(x))]
    return rows, matched
