"""Guesses made without the update, scored like reconstructions: what leakage has to beat.

Every score the audit and the benchmarks report stands beside these (the same samples, the same
judge, the same intervals), so a reconstruction that only looks like an average digit is not
taken for leakage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from fedsnn.core.metrics import mean_stat, per_sample_scores, rate_stat

Predict = Callable[[torch.Tensor], torch.Tensor]  # images -> predicted labels (a judge)
IMAGE_SCORE_KEYS = ("mse", "ssim", "psnr")


def image_guesses(train_x: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    """The train split's mean image, all black and mid-gray 0.5, one per attacked image."""
    return {"mean-image": train_x.mean(0, keepdim=True).expand_as(truth),
            "black": torch.zeros_like(truth), "gray-0.5": torch.full_like(truth, 0.5)}


def spike_guesses(train_x: torch.Tensor, truth: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """For spike tensors: no spikes, the train split's mean frames binarized at 0.5, and random
    spikes at the train split's rate (seeded)."""
    rate = float(train_x.mean())
    generator = torch.Generator().manual_seed(seed)
    return {
        "no spikes": torch.zeros_like(truth),
        "mean frames >= 0.5": (train_x.mean(0, keepdim=True) >= 0.5).float().expand_as(truth),
        f"random spikes (rate {rate:.3f})": (torch.rand(truth.shape, generator=generator) < rate)
        .float(),
    }


def image_distances(guess: torch.Tensor, truth: torch.Tensor) -> dict[str, list[float]]:
    """Per-sample MSE, SSIM and PSNR."""
    scores = per_sample_scores(guess, truth)
    return {k: scores[k].tolist() for k in IMAGE_SCORE_KEYS}


def spike_distances(guess: torch.Tensor, truth: torch.Tensor) -> dict[str, list[float]]:
    """Per-sample L1 distance between spike tensors."""
    return {"l1": (guess - truth).abs().flatten(1).sum(1).tolist()}


def score_guesses(guesses: Mapping[str, torch.Tensor], truth: torch.Tensor, labels: torch.Tensor,
                  *, distances: Callable[[torch.Tensor, torch.Tensor], dict[str, list[float]]],
                  predict: Predict | None, std: bool = False) -> dict[str, dict[str, Any]]:
    """Each guess scored on the attacked samples: judge ASR (Wilson interval; None without a
    judge) and the mean of each distance (normal interval, and its std with `std`)."""
    out = {}
    for name, guess in guesses.items():
        hits = int((predict(guess) == labels).sum()) if predict is not None else None
        out[name] = {"asr": rate_stat(hits, len(labels)) if hits is not None else None,
                     **{k: mean_stat(v, std=std) for k, v in distances(guess, truth).items()}}
    return out
