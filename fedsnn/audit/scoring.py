"""Scoring a reconstruction against the ground truth (the scorer's side, never the attacker's):
match reconstructed images to the originals by an optimal assignment, then per sample MSE / SSIM
/ PSNR, the judge's label and the inferred label (`fedsnn.audit.chance.score_candidates`, the
pipeline every null goes through too)."""

from __future__ import annotations

from typing import Any

import torch

from attacks import Reconstruction
from fedsnn.audit.baselines import Predict
from fedsnn.audit.chance import Truth, score_candidates
from fedsnn.core.metrics import to_images


def score_images(reconstruction: Reconstruction, x: torch.Tensor, y: torch.Tensor,
                 predict: Predict | None) -> tuple[list[dict[str, Any]], torch.Tensor]:
    """Per-sample scores of a reconstruction of batch (x, y), matched to it by an optimal
    assignment, and judged by `predict` (None: no judge, its fields are None); and the matched
    images. An unusable reconstruction (wrong shape, non-finite) is scored as a black guess."""
    images = to_images(reconstruction.inputs)
    if images.shape != x.shape or not torch.isfinite(images).all():
        images = torch.zeros_like(x)  # nothing usable came back: scored as a black guess
    labels = reconstruction.labels if len(reconstruction.labels) == len(x) else \
        torch.full_like(y, -1)
    scored = score_candidates(images, None, Truth(x, y, None, None, predict))
    assert scored.order is not None
    matched_labels, judged = labels[scored.order], scored.judged
    rows = [{"true-label": int(y[i]), "inferred-label": int(matched_labels[i]),
             "judge-label": int(judged[i]) if judged is not None else None,
             "success": bool(judged[i] == y[i]) if judged is not None else None,
             "label-correct": bool(matched_labels[i] == y[i]),
             **{k: float(v[i]) for k, v in scored.values.items()}} for i in range(len(x))]
    return rows, scored.matched
