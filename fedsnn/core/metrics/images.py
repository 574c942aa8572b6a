"""Image similarity between reconstructions and originals (torchmetrics), per sample and mean.

Images are [B, C, H, W] in [0, 1] (data range 1). PSNR is capped at `PSNR_CAP_DB` (an MSE floor of
1e-10), so an exact reconstruction scores a finite number that can be averaged and written to JSON."""

from __future__ import annotations

import torch
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

PSNR_CAP_DB = 100.0


def _check(reconstruction: torch.Tensor, truth: torch.Tensor) -> None:
    if reconstruction.shape != truth.shape or reconstruction.dim() != 4:
        raise ValueError(f"Expected two [B, C, H, W] tensors of one shape, got "
                         f"{tuple(reconstruction.shape)} and {tuple(truth.shape)}")


def to_images(inputs: torch.Tensor) -> torch.Tensor:
    """A reconstruction as [B, C, H, W] images: a per-time-step dummy [T, B, C, H, W] is averaged
    over time (the image a direct or rate encoding would have come from)."""
    inputs = inputs.detach().float()
    return inputs.mean(0) if inputs.dim() == 5 else inputs


def per_sample_scores(reconstruction: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    """MSE, PSNR (dB) and SSIM of each pair (reconstructions are clipped to [0, 1] first)."""
    _check(reconstruction, truth)
    x = reconstruction.detach().float().clamp(0.0, 1.0)
    y = truth.detach().float()
    mse = ((x - y) ** 2).flatten(1).mean(1)
    psnr = peak_signal_noise_ratio(x, y, data_range=1.0, reduction="none", dim=(1, 2, 3))
    psnr = psnr.nan_to_num(posinf=PSNR_CAP_DB).clamp(max=PSNR_CAP_DB)
    side = min(x.shape[-2:])
    kernel = min(11, side if side % 2 else side - 1)
    ssim = structural_similarity_index_measure(x, y, data_range=1.0, reduction="none",
                                               kernel_size=kernel)
    return {"mse": mse, "psnr": psnr, "ssim": ssim}


def image_scores(reconstruction: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Means over the batch of MSE, PSNR and SSIM.

    Example:
        >>> x = torch.zeros(2, 1, 28, 28)
        >>> round(image_scores(x + 0.1, x)["psnr"], 1)
        20.0
    """
    return {key: float(values.mean()) for key, values in per_sample_scores(reconstruction, truth).items()}
