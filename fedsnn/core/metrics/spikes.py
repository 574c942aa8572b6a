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


def class_distance_stats(samples: torch.Tensor, labels: torch.Tensor) -> dict[str, dict[str, float]]:
    """Mean, std, min and max of the L1 distance between pairs of samples of the same class
    ("intra") and of different classes ("inter"), each unordered pair once (the study's Table VI:
    the natural variation a reconstruction's distance is read against).

    Example:
        >>> x = torch.tensor([[0., 0.], [0., 1.], [1., 1.]])
        >>> class_distance_stats(x, torch.tensor([0, 0, 1]))["inter"]["mean"]
        1.5
    """
    flat = samples.detach().flatten(1).float()
    distances = torch.cdist(flat.unsqueeze(0), flat.unsqueeze(0), p=1.0)[0]
    upper = torch.triu(torch.ones_like(distances, dtype=torch.bool), diagonal=1)
    same = labels.view(-1, 1) == labels.view(1, -1)
    return {name: _summary(distances[mask].double())
            for name, mask in (("intra", upper & same), ("inter", upper & ~same))}


def _summary(values: torch.Tensor) -> dict[str, float]:
    if not len(values):
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"),
                "max": float("nan"), "pairs": 0}
    return {"mean": float(values.mean()), "std": float(values.std()) if len(values) > 1 else 0.0,
            "min": float(values.min()), "max": float(values.max()), "pairs": int(len(values))}
