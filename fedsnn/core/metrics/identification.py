"""Identification (breaching's IIP): a reconstruction identifies its original when the original
is its nearest neighbour, in pixel space, among a pool of the dataset's images."""

from __future__ import annotations

import torch


def nearest_in_pool(reconstructions: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """[B] index of each reconstruction's nearest pool image (Euclidean distance on pixels,
    reconstructions clipped to [0, 1] first)."""
    x = reconstructions.detach().float().flatten(1).clamp(0.0, 1.0)
    return torch.cdist(x, pool.detach().float().flatten(1)).argmin(1)


def identified(reconstructions: torch.Tensor, truth_index: torch.Tensor, pool: torch.Tensor
               ) -> torch.Tensor:
    """[B] bool: whether reconstruction b's nearest pool image is its original pool[truth_index[b]].

    Example:
        >>> pool = torch.eye(3).view(3, 1, 1, 3)
        >>> identified(pool[[0, 2]] * 0.9, torch.tensor([0, 1]), pool).tolist()
        [True, False]
    """
    if len(reconstructions) != len(truth_index):
        raise ValueError(f"Expected one pool index per reconstruction, got {len(truth_index)} for "
                         f"{len(reconstructions)}")
    return nearest_in_pool(reconstructions, pool) == truth_index.to(torch.long)
