"""The auditor: scores reconstructions against ground truth that it loads itself.

This is a different code path from the attacker. It receives a finished reconstruction, asks its
ground truth (`fedsnn.audit.ground_truth`, never a client's reply) which samples the client
trained on, looks them up in the dataset, matches reconstructions to
originals by an optimal assignment, and scores them (MSE, PSNR, SSIM, label accuracy, judge ASR,
identified: the true image is the reconstruction's nearest neighbour in the train split) and the
inferred class histogram (exact classes, total variation). Every metric stands beside its nulls,
images without information about the update scored through the identical pipeline
(`fedsnn.audit.chance`), with the one-sided test against the strongest (`fedsnn.audit.decision`).
It also scores constant guesses (mean image, black, mid-gray), as before.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from attacks import Reconstruction, Status
from fedsnn.audit.baselines import image_distances, image_guesses, score_guesses
from fedsnn.audit.ground_truth import GroundTruth, no_ground_truth
from fedsnn.audit.queue import AuditJob
from fedsnn.audit.decision import Count
from fedsnn.audit.chance import (NullSources, Scored, Truth, histogram_test, metric_tests,
                                 score_candidates, score_nulls)
from fedsnn.core.metrics import histogram, histogram_scores, identified, round_to_total, to_images

MIN_NULL_IMAGES = 100  # per random null and update: 1 image of 1 recovered vs 0 of 100: p < 0.01


def as_images(reconstruction: Reconstruction) -> torch.Tensor:
    """Reconstruction inputs as [B, C, H, W] images (`fedsnn.core.metrics.to_images`)."""
    return to_images(reconstruction.inputs)


class Auditor:
    """Scores attacks on one dataset's train split, each beside its nulls (`fedsnn.audit.chance`).

    Args:
        train_x: the train split's images (ids index into it; the identification pool).
        train_y: their labels.
        judge: a classifier for the judge ASR (None: ASR is not reported).
        ground_truth: (round, partition id) -> the ids the client trained on, or None.
        public_x, public_y: images the server may hold (the test split): the `public-draws` null
            and the canaries' images (None: the train split stands in, without the update's own
            images).
        native_size: the dataset's native image side, for the `matched-noise` null.
        null_draws: independent draws of each random null per update.
    """

    def __init__(self, train_x: torch.Tensor, train_y: torch.Tensor,
                 judge: nn.Module | None = None, ground_truth: GroundTruth = no_ground_truth,
                 *, public_x: torch.Tensor | None = None, public_y: torch.Tensor | None = None,
                 native_size: int | None = None, null_draws: int = 3) -> None:
        self.train_x = train_x
        self.train_y = train_y
        self.judge = judge
        self.ground_truth = ground_truth
        self.public_x = train_x if public_x is None else public_x
        self.public_y = train_y if public_y is None else public_y
        self.native_size = native_size
        self.null_draws = null_draws

    def sample_ids(self, job: AuditJob) -> list[int]:
        """The ids of the samples behind `job`'s reply ([] when unknown; a canary's ids are
        into the public images)."""
        if job.is_canary:
            return list(job.canary_ids)
        return list(self.ground_truth(job.server_round, job.partition_id) or [])

    def _predict(self, images: torch.Tensor) -> torch.Tensor:
        """The judge's labels of images (clamped to [0, 1])."""
        assert self.judge is not None
        with torch.no_grad():
            return self.judge(images.clamp(0, 1)).argmax(1)

    def truth(self, job: AuditJob) -> Truth | None:
        """What the scorer knows of `job`'s update (None: no ground truth). A canary is scored
        in the public images, without the judge (fit on them, it would flatter the canary)."""
        ids = torch.tensor(self.sample_ids(job), dtype=torch.long)
        if len(ids) == 0:
            return None
        if job.is_canary:
            return Truth(self.public_x[ids], self.public_y[ids], ids, self.public_x)
        return Truth(self.train_x[ids], self.train_y[ids], ids, self.train_x,
                     self._predict if self.judge is not None else None)

    def score(self, job: AuditJob, reconstruction: Reconstruction,
              others: Sequence[Reconstruction] = ()) -> dict[str, Any]:
        """One audit.json row for an attack on one update, beside its nulls: each metric, each
        null (with counts), the one-sided test against the strongest, the histogram against the
        class prior. `others`: the attack's reconstructions of other updates (the permutation
        null). An attack that did not finish stays in the denominator (its figures a lower
        bound); one with no usable output counts as recovering nothing."""
        truth = self.truth(job)
        row: dict[str, Any] = {
            "round": job.server_round, "partition-id": job.partition_id,
            "canary": job.is_canary,
            **({"defense": job.defense} if job.defense else {}),
            **({"canary-accuracy": job.accuracy} if job.accuracy is not None else {}),
            "target": reconstruction.target_id, "attack": reconstruction.attack,
            "status": reconstruction.status.value, "message": reconstruction.message,
            "seconds": round(reconstruction.seconds, 2),
            "steps-done": len(reconstruction.loss_history),
            "steps-planned": job.settings.planned_steps,
            "matching-loss": reconstruction.matching_loss,
            "batch-size": job.observation.batch_size,
            "exact-gradient": job.observation.exact_gradient,
            "inferred-labels": reconstruction.labels.tolist(),
            "true-labels": [] if truth is None else truth.labels.tolist(),
            "lower-bound": reconstruction.status != Status.OK,
        }
        if truth is None:  # a deployment (audit-ground-truth="none") or an unknown partition
            row.update(status="unscored", message=f"{row['message']}; no ground truth for this "
                       "node's samples (audit-ground-truth), nothing to score against".lstrip("; "))
            return row
        row.update(self._histograms(reconstruction.labels, truth.labels, seed=_seed(job)))
        images = as_images(reconstruction)
        usable = (images.shape == truth.images.shape and bool(torch.isfinite(images).all())
                  and reconstruction.status != Status.FAILED)
        if not usable:  # stays in the denominator: it recovered nothing
            if reconstruction.status in (Status.FAILED, Status.TIMEOUT):
                problem = "no reconstruction"
            elif images.shape != truth.images.shape:
                problem = (f"reconstruction shape {tuple(images.shape)} does not match the "
                           f"{len(truth.images)} reported samples of shape "
                           f"{tuple(truth.images.shape[1:])}")
            else:
                problem = "non-finite reconstruction"
            failed = reconstruction.status != Status.TIMEOUT
            row.update(status="failed" if failed else row["status"], **{"lower-bound": True},
                       message=problem if failed and not reconstruction.message else
                       f"{reconstruction.message}; {problem}".lstrip("; "))
        scored = (score_candidates(images, _labels(reconstruction, len(truth.images)), truth)
                  if usable else _nothing(truth))
        # enough null images that a perfect attack on a small batch can reach the level
        draws = max(self.null_draws, math.ceil(MIN_NULL_IMAGES / len(truth.images)))
        nulls = score_nulls(truth, NullSources(
            self.public_x, self.public_y, self.native_size, draws, _seed(job),
            # public images that are the pool itself (a canary's; no public data given): never
            # draw the very images the update was made of
            exclude=truth.pool_ids if truth.pool is self.public_x else None,
            others=tuple((as_images(o), _labels(o, len(as_images(o)))) for o in others
                         if _usable(o))))
        tests = metric_tests(scored, nulls, truth.labels)
        row.update({
            "images": len(truth.images),
            **{k: _finite_mean(scored.values[k]) for k in ("mse", "psnr", "ssim")},
            "label-accuracy": _rate(scored.count("label-accuracy")),
            "asr": _rate(scored.count("asr")),
            "identified": int(scored.hits["identified"].sum()),
            "tests": {metric: test.to_dict() for metric, test in tests.items()},
        })
        if usable:
            row["_images"] = (truth.images, scored.matched)
        return row

    def _histograms(self, inferred: torch.Tensor, truth: torch.Tensor, seed: int
                    ) -> dict[str, Any]:
        """The inferred class histogram (from the reconstruction's labels) and the class-prior
        guess (the train split's shares scaled to the batch), each scored against the truth, and
        the test of the estimate against the prior (`fedsnn.audit.chance.histogram_test`)."""
        classes = int(self.train_y.max()) + 1
        prior_shares = histogram(self.train_y, classes).double()
        tested = histogram_test(inferred, truth, prior_shares, seed=seed)
        prior = histogram_scores(round_to_total(prior_shares, len(truth)),
                                 histogram(truth, classes))
        if tested is None:
            return {"histogram": dict.fromkeys(("classes-exact", "all-exact", "total-variation")),
                    "prior-histogram": prior, "histogram-test": None}
        return {"histogram": tested["estimate"], "prior-histogram": prior,
                "histogram-test": {"p-value": tested["p-value"],
                                   "worse-than-prior": tested["worse-than-prior"]}}

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


def _seed(job: AuditJob) -> int:
    """The nulls' seed of one update (reproducible, different per update)."""
    return zlib.crc32(f"{job.server_round}/{job.partition_id}/{job.canary_ids[:1]}".encode())


def _usable(reconstruction: Reconstruction) -> bool:
    images = as_images(reconstruction)
    return images.dim() == 4 and images.shape[-1] > 1 and bool(torch.isfinite(images).all())


def _labels(reconstruction: Reconstruction, n: int) -> torch.Tensor | None:
    labels = reconstruction.labels
    return labels if len(labels) == n and bool((labels >= 0).all()) else None


def _nothing(truth: Truth) -> Scored:
    """The scores of an attack that returned nothing usable: no image recovered."""
    n = len(truth.images)
    no = torch.zeros(n, dtype=torch.bool)
    hits = {"identified": no, **({"asr": no} if truth.predict is not None else {})}
    return Scored(hits, {k: torch.full((n,), math.nan) for k in ("mse", "psnr", "ssim")},
                  torch.zeros_like(truth.images))


def _finite_mean(values: torch.Tensor) -> float | None:
    """The mean of the scored values (an exact copy's PSNR is +inf and counts; NaN: none)."""
    scored = values[~torch.isnan(values)]
    return float(scored.mean()) if len(scored) else None


def _rate(count: Count | None) -> float | None:
    return None if count is None else count.rate
