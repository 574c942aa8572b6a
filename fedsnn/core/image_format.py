"""How a dataset's images reach the model's input size: the one resize every source applies.

A source made at a smaller native resolution (scikit-learn's digits are 8x8) is upsampled to the
model's input (28x28) by `resize`, a fixed linear map. A server that names the dataset in its run
config knows this format: an attacker granted it (capability `data-format`,
`attacks/threat_model.py`) optimizes images at the native resolution and maps them through the
same `resize` (differentiable), e.g. 64 unknowns per digit instead of 784.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """[N, C, H, W] images in [0, 1] resized to [N, C, size, size] (bilinear, antialiased when
    shrinking; differentiable). Upsampling mixes pixels convexly, so [0, 1] is kept."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True).clamp(0.0, 1.0)


def upsampled_from(native_size: int | None, size: int) -> bool:
    """Whether images of `size` were upsampled from `native_size` (so a native-resolution
    parametrization has fewer unknowns); False when the native size is unknown or not smaller."""
    return native_size is not None and 0 < native_size < size
