"""The auditor: scores reconstructions against ground truth that it loads itself.

This is a different code path from the attacker. It receives a finished reconstruction, asks its
ground truth (`fedsnn.audit.ground_truth`, never a client's reply) which samples the client
trained on, looks them up in the dataset, matches reconstructions to
originals by an optimal assignment, and scores them (MSE, PSNR, SSIM, label accuracy, judge ASR,
identified: the true image is the reconstruction's nearest neighbour in the train split) and the
inferred class histogram (exact classes, total variation). It also scores guesses made without
the update (mean image, black, mid-gray; the class prior for histograms), so leakage can be told
apart from guessing.
"""

from __future__ import annotations

import math
from statistics import fmean
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from attacks import Reconstruction, Status
from fedsnn.audit.baselines import image_distances, image_guesses, score_guesses
from fedsnn.audit.ground_truth import GroundTruth, no_ground_truth
from fedsnn.audit.queue import AuditJob
from fedsnn.audit.scoring import score_images
from fedsnn.core.metrics import histogram, histogram_scores, identified, round_to_total, to_images


def as_images(reconstruction: Reconstruction) -> torch.Tensor:
    """Reconstruction inputs as [B, C, H, W] images (`fedsnn.core.metrics.to_images`)."""
    return to_images(reconstruction.inputs)


class Auditor:
    """Scores attacks on one dataset's train split.

    Args:
        train_x: the train split's images (ids index into it).
        train_y: their labels.
        judge: a classifier for the judge ASR (None: ASR is not reported).
        ground_truth: (round, partition id) -> the ids the client trained on, or None.
    """

    def __init__(self, train_x: torch.Tensor, train_y: torch.Tensor,
                 judge: nn.Module | None = None, ground_truth: GroundTruth = no_ground_truth
                 ) -> None:
        self.train_x = train_x
        self.train_y = train_y
        self.judge = judge
        self.ground_truth = ground_truth

    def sample_ids(self, job: AuditJob) -> list[int]:
        """The ids of the samples behind `job`'s reply ([] when unknown)."""
        return list(self.ground_truth(job.server_round, job.partition_id) or [])

    def _predict(self, images: torch.Tensor) -> torch.Tensor:
        """The judge's labels of images (clamped to [0, 1])."""
        assert self.judge is not None
        with torch.no_grad():
            return self.judge(images.clamp(0, 1)).argmax(1)

    def score(self, job: AuditJob, reconstruction: Reconstruction) -> dict[str, Any]:
        """One audit.json row for an attack on one client reply."""
        ids = torch.tensor(self.sample_ids(job), dtype=torch.long)
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
        if len(ids):
            row.update(self._histograms(reconstruction.labels, self.train_y[ids]))
        if reconstruction.status not in (Status.OK, Status.TIMEOUT, Status.DIVERGED):
            return row
        if len(ids) == 0:  # a deployment (audit-ground-truth="none") or an unknown partition
            row.update(status="unscored", message=f"{row['message']}; no ground truth for this "
                       "node's samples (audit-ground-truth), nothing to score against".lstrip("; "))
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
        true_labels = self.train_y[ids]
        rows, matched = score_images(reconstruction, truth, true_labels,
                                     self._predict if self.judge is not None else None)
        row.update({
            "status": "ok" if reconstruction.status == Status.OK else reconstruction.status.value,
            **{k: fmean(r[k] for r in rows) for k in ("mse", "psnr", "ssim")},
            "label-accuracy": (fmean(r["label-correct"] for r in rows)
                               if len(reconstruction.labels) == len(ids) else math.nan),
            "asr": fmean(r["success"] for r in rows) if self.judge is not None else None,
            "identified": int(identified(matched, ids, self.train_x).sum()),
            "_images": (truth, matched),
        })
        return row

    def _histograms(self, inferred: torch.Tensor, truth: torch.Tensor) -> dict[str, Any]:
        """The inferred class histogram (from the reconstruction's labels) and the class-prior
        guess (the train split's histogram scaled to the batch), each scored against the truth."""
        classes = int(self.train_y.max()) + 1
        true_counts = histogram(truth, classes)
        if len(inferred) != len(truth) or bool((inferred < 0).any()):
            inferred_scores: dict[str, float | None] = dict.fromkeys(
                ("classes-exact", "all-exact", "total-variation"))
        else:
            inferred_scores = histogram_scores(histogram(inferred, classes), true_counts)
        prior = round_to_total(histogram(self.train_y, classes).double(), len(truth))
        return {"histogram": inferred_scores, "prior-histogram": histogram_scores(prior, true_counts)}

    def baselines(self, sample_ids: Sequence[int]) -> dict[str, dict[str, float | None]]:
        """Scores of guesses made without any update, on the same attacked samples (means, as in
        the rows; `fedsnn.audit.baselines`)."""
        ids = torch.tensor(list(sample_ids), dtype=torch.long)
        if len(ids) == 0:
            return {}
        truth = self.train_x[ids]
        guesses = image_guesses(self.train_x, truth)
        scored = score_guesses(guesses, truth, self.train_y[ids], distances=image_distances,
                               predict=self._predict if self.judge is not None else None)
        return {name: {"mse": s["mse"]["value"], "psnr": s["psnr"]["value"],
                       "ssim": s["ssim"]["value"],
                       "asr": s["asr"]["value"] if s["asr"] is not None else None,
                       "identified": int(identified(guesses[name], ids, self.train_x).sum()),
                       "samples": len(ids)}
                for name, s in scored.items()}
