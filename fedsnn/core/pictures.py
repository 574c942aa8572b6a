"""Drawing a [C, H, W] image in [0, 1] on a matplotlib axis: colour when it has three channels,
gray otherwise (the bench's grids and the audit's report share it)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def display_array(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """[C, H, W] -> [H, W, 3] for colour, [H, W] for one channel, clipped to [0, 1].

    Example:
        >>> display_array(np.zeros((3, 4, 5))).shape
        (4, 5, 3)
    """
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    array = array.transpose(1, 2, 0) if array.shape[0] == 3 else array[0]
    return np.clip(array, 0.0, 1.0)


def show_image(axis: Any, image: torch.Tensor | np.ndarray) -> None:
    """Draw `image` ([C, H, W]) on `axis`; a gray map is used only for one-channel images."""
    array = display_array(image)
    if array.ndim == 3:
        axis.imshow(array)
    else:
        axis.imshow(array, cmap="gray", vmin=0, vmax=1)
