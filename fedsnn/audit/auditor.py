"""The auditor: scores reconstructions against ground truth that it loads itself.

This is a different code path from the attacker. It receives a finished reconstruction and the
sample ids the client reported, looks the samples up in the dataset, matches reconstructions to
originals by an optimal assignment, and scores them (MSE, PSNR, SSIM, label accuracy, judge ASR).
It also scores guesses made without the update (mean image, black, mid-gray), so leakage can be
told apart from guessing. A reconstruction "identifies" its original when the original is its
nearest neighbour, in pixel space, in the whole train split (breaching's IIP).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from attacks import Reconstruction, Status
from fedsnn.audit.queue import AuditJob
from fedsnn.metrics import identified, image_scores, match_by_mse


def as_images(reconstruction: Reconstruction) -> torch.Tensor:
    """Reconstruction inputs as [B, C, H, W] images: per-time-step dummies [T, B, …] are averaged
    over time (the image a direct or rate encoding would have come from)."""
    inputs = reconstruction.inputs.detach().float()
    return inputs.mean(0) if inputs.dim() == 5 else inputs


class Auditor:
    """Scores attacks on one dataset's train split.

    Args:
        train_x: the train split's images (ids index into it).
        train_y: their labels.
        judge: a classifier for the judge ASR (None: ASR is not reported).
    """

    def __init__(self, train_x: torch.Tensor, train_y: torch.Tensor,
                 judge: nn.Module | None = None) -> None:
        self.train_x = train_x
        self.train_y = train_y
        self.judge = judge

    def _judge_hits(self, images: torch.Tensor, labels: torch.Tensor) -> list[bool] | None:
        if self.judge is None:
            return None
        with torch.no_grad():
            predicted = self.judge(images.clamp(0, 1)).argmax(1)
        return (predicted == labels).tolist()

    def score(self, job: AuditJob, reconstruction: Reconstruction) -> dict[str, Any]:
        """One audit.json row for an attack on one client reply."""
        ids = torch.tensor(job.sample_ids, dtype=torch.long)
        row: dict[str, Any] = {
            "round": job.server_round, "partition-id": job.partition_id,
            "target": reconstruction.target_id, "attack": reconstruction.attack,
            "status": reconstruction.status.value, "message": reconstruction.message,
            "seconds": round(reconstruction.seconds, 2),
            "matching-loss": reconstruction.matching_loss,
            "batch-size": job.observation.batch_size,
            "exact-gradient": job.observation.exact_gradient,
            "inferred-labels": reconstruction.labels.tolist(),
            "true-labels": self.train_y[ids].tolist() if len(ids) else [],
        }
        if reconstruction.status not in (Status.OK, Status.TIMEOUT, Status.DIVERGED):
            return row
        if len(ids) == 0:  # e.g. an edge node training on its own data (data-path)
            row.update(status="unscored", message=f"{row['message']}; the node reported no "
                       "sample ids, so there is no ground truth to score against".lstrip("; "))
            return row
        images = as_images(reconstruction)
        truth = self.train_x[ids]
        if len(ids) != len(images) or images.shape[1:] != truth.shape[1:]:
            row.update(status="failed", message=f"reconstruction shape {tuple(images.shape)} does "
                       f"not match the {len(ids)} reported samples of shape {tuple(truth.shape[1:])}")
            return row
        if not torch.isfinite(images).all():
            row.update(status="failed", message="non-finite reconstruction")
            return row
        order = match_by_mse(images, truth)
        matched = images[order]
        scores = image_scores(matched, truth)
        true_labels = self.train_y[ids]
        inferred = reconstruction.labels[order] if len(reconstruction.labels) == len(ids) else None
        hits = self._judge_hits(matched, true_labels)
        row.update({
            "status": "ok" if reconstruction.status == Status.OK else reconstruction.status.value,
            "mse": scores["mse"], "psnr": scores["psnr"], "ssim": scores["ssim"],
            "label-accuracy": (float((inferred == true_labels).float().mean())
                               if inferred is not None else math.nan),
            "asr": (sum(hits) / len(hits)) if hits is not None else None,
            "identified": float(identified(matched, ids, self.train_x).float().mean()),
            "_images": (truth, matched),
        })
        return row

    def baselines(self, sample_ids: Sequence[int]) -> dict[str, dict[str, float | None]]:
        """Scores of guesses made without any update, on the same attacked samples."""
        ids = torch.tensor(list(sample_ids), dtype=torch.long)
        if len(ids) == 0:
            return {}
        truth = self.train_x[ids]
        labels = self.train_y[ids]
        guesses = {"mean-image": self.train_x.mean(0, keepdim=True),
                   "black": torch.zeros_like(truth[:1]),
                   "gray-0.5": torch.full_like(truth[:1], 0.5)}
        out = {}
        for name, guess in guesses.items():
            images = guess.expand_as(truth)
            scores = image_scores(images, truth)
            hits = self._judge_hits(images, labels)
            out[name] = {**scores, "asr": (sum(hits) / len(hits)) if hits is not None else None,
                         "identified": float(identified(images, ids, self.train_x).float().mean())}
        return out

