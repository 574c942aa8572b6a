"""Label-histogram leakage: how close an inferred class histogram is to a client's true one."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def round_to_total(shares: torch.Tensor, total: int) -> torch.Tensor:
    """Non-negative integers summing to `total`, proportional to `shares` (largest remainder).

    Example:
        >>> round_to_total(torch.tensor([0.5, 0.3, 0.2]), 4).tolist()
        [2, 1, 1]
    """
    shares = shares.double().clamp(min=0)
    if total <= 0 or float(shares.sum()) == 0:
        counts = torch.zeros(len(shares), dtype=torch.long)
        if total > 0:
            counts[0] = total
        return counts
    exact = shares / shares.sum() * total
    counts = exact.floor().long()
    remainder = exact - counts
    counts[torch.argsort(remainder, descending=True)[:total - int(counts.sum())]] += 1
    return counts


def histogram(labels: Sequence[int] | torch.Tensor, num_classes: int) -> torch.Tensor:
    """Count of each class among `labels`."""
    return torch.bincount(torch.as_tensor(labels, dtype=torch.long), minlength=num_classes)


def histogram_scores(inferred: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Scores of an inferred class histogram against the true one (same total).

    Returns:
        "classes-exact": fraction of classes whose count is exact; "all-exact": 1.0 when every
        count is, else 0.0; "total-variation": half the L1 distance of the two normalized
        histograms (0 equal, 1 disjoint).
    """
    inferred, truth = inferred.long(), truth.long()
    total = max(int(truth.sum()), 1)
    exact = (inferred == truth).float()
    return {"classes-exact": float(exact.mean()), "all-exact": float(exact.all()),
            "total-variation": 0.5 * float((inferred.double() / max(int(inferred.sum()), 1)
                                             - truth.double() / total).abs().sum())}
