"""Match a batch of reconstructions to the originals by an optimal assignment (a batch attack
returns its samples in no particular order)."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment


def match_by_mse(reconstruction: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Indices `order` such that reconstruction[order][i] is matched to truth[i], minimizing the
    total MSE (Hungarian algorithm). With more reconstructions than originals, the best
    `len(truth)` of them are used (a null made of another client's reconstructions).

    Example:
        >>> truth = torch.eye(3).view(3, 1, 1, 3)
        >>> match_by_mse(truth[[2, 0, 1]], truth).tolist()
        [1, 2, 0]
    """
    if len(reconstruction) < len(truth):
        raise ValueError(f"Expected at least as many reconstructions as originals, got "
                         f"{len(reconstruction)} and {len(truth)}")
    x = reconstruction.detach().float().flatten(1).clamp(0.0, 1.0)
    y = truth.detach().float().flatten(1)
    cost = torch.cdist(y, x) ** 2  # rows: originals, columns: reconstructions
    rows, columns = linear_sum_assignment(cost.numpy())
    order = torch.empty(len(truth), dtype=torch.long)
    order[torch.as_tensor(rows)] = torch.as_tensor(columns, dtype=torch.long)
    return order

