"""Clip a model update to an L2 ball and add Gaussian noise: what central and local DP do.

Flower's helpers (`compute_clip_model_update`, `add_gaussian_noise_inplace`) divide by the
update's norm, so an all-zero update raises ZeroDivisionError, and they scale integer arrays in
place, which numpy refuses. Here:

- only floating-point arrays are the update; a non-floating array (a counter such as BatchNorm's
  `num_batches_tracked`) is replaced by the reference's value, so it carries nothing of the
  client's data into the release and never breaks the arithmetic;
- a zero update is left as it is (its norm is already within any bound);
- arithmetic is in float64 and the result keeps each array's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClipResult:
    """A clipped reply and what clipping did."""

    arrays: list[np.ndarray]
    norm: float          # L2 norm of the float update before clipping
    clipped: bool        # True when the update was scaled down


def _is_float(array: np.ndarray) -> bool:
    return np.issubdtype(np.asarray(array).dtype, np.floating)


def update_norm(reply: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    """L2 norm of reply − reference over the floating-point arrays."""
    total = 0.0
    for new, old in zip(reply, reference, strict=True):
        if _is_float(new):
            diff = np.asarray(new, dtype=np.float64) - np.asarray(old, dtype=np.float64)
            total += float(np.dot(diff.ravel(), diff.ravel()))
    return math.sqrt(total)


def clip_update(reply: Sequence[np.ndarray], reference: Sequence[np.ndarray], *,
                clipping_norm: float) -> ClipResult:
    """reference + (reply − reference) · min(1, C / ‖reply − reference‖).

    Args:
        reply: the client's arrays (weights after local training).
        reference: the arrays the server sent, in the same order.
        clipping_norm: C > 0.

    Example:
        >>> out = clip_update([np.array([3.0, 4.0])], [np.zeros(2)], clipping_norm=1.0)
        >>> out.arrays[0].tolist(), out.norm, out.clipped
        ([0.6000000000000001, 0.8], 5.0, True)
    """
    if not clipping_norm > 0:
        raise ValueError(f"Expected argument `clipping_norm` to be positive but got {clipping_norm}")
    norm = update_norm(reply, reference)
    scale = clipping_norm / norm if norm > clipping_norm else 1.0
    arrays = []
    for new, old in zip(reply, reference, strict=True):
        new, old = np.asarray(new), np.asarray(old)
        if not _is_float(new):
            arrays.append(old.astype(new.dtype, copy=True))
            continue
        base = old.astype(np.float64)
        arrays.append((base + (new.astype(np.float64) - base) * scale).astype(new.dtype))
    return ClipResult(arrays, norm, scale < 1.0)


def add_gaussian_noise(arrays: Sequence[np.ndarray], *, std: float,
                       generator: np.random.Generator) -> list[np.ndarray]:
    """Add N(0, std²) to every element of the floating-point arrays; others are returned as they
    are. The generator must be secret (never seeded from the public run config)."""
    if std < 0:
        raise ValueError(f"Expected argument `std` to be non-negative but got {std}")
    out = []
    for array in arrays:
        array = np.asarray(array)
        if _is_float(array) and std > 0:
            noisy = array.astype(np.float64) + generator.normal(0.0, std, array.shape)
            out.append(noisy.astype(array.dtype))
        else:
            out.append(array.copy())
    return out
