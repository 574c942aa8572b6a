"""Distances between spike tensors (sparse binary sequences, [T, B, C, H, W] or [T, C, H, W])."""

from __future__ import annotations

import torch


def spike_l1(reconstruction: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """L1 distance per sample (sum of absolute differences over time, channels and pixels).

    With a batch dimension (5-D, time first) returns [B]; for one sample (4-D) a scalar."""
    diff = (reconstruction.detach().float() - truth.detach().float()).abs()
    return diff.sum(dim=(0, 2, 3, 4)) if diff.dim() == 5 else diff.sum()


def spike_l2(reconstruction: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Euclidean distance per sample (same layout rules as `spike_l1`)."""
    diff = (reconstruction.detach().float() - truth.detach().float()) ** 2
    return (diff.sum(dim=(0, 2, 3, 4)) if diff.dim() == 5 else diff.sum()).sqrt()
