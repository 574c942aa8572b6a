"""The dummy an attack optimizes, for ANNs and spiking twins (the study's §III-A / III-B).

- Shape: [B, C, H, W] for an ANN and for a spiking model attacked with one image shared over the
  T time steps (direct encoding); [T, B, C, H, W] for a spiking model attacked per time step.
- Initialisation: near-uniform gray (image modality), small positive N(mu, sigma) (spike
  modality), or N(0, 1) (the original DLG code).
- Constraints after each step: pixel clamp [0, 1] (image modality) or non-negativity (spikes).
- Thresholding: "post" binarizes at theta after the attack; "in" binarizes on every forward pass
  with a straight-through gradient (the value is binary, the gradient passes as if it were not).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from attacks.settings import AttackSettings
from fedsnn.core.models import ModelSpec


def dummy_shape(spec: ModelSpec, batch_size: int, settings: AttackSettings) -> tuple[int, ...]:
    """Shape of the attacker's dummy for a model of `spec` and a client batch of `batch_size`."""
    image = (batch_size, spec.in_channels, spec.image_size, spec.image_size)
    if spec.is_spiking and settings.time_mode == "per-step":
        return (spec.time_steps, *image)
    return image


def _gray(shape: tuple[int, ...], settings: AttackSettings, generator: torch.Generator) -> torch.Tensor:
    return (0.5 + settings.init_std * torch.randn(shape, generator=generator)).clamp_(0.0, 1.0)


def _normal(shape: tuple[int, ...], settings: AttackSettings, generator: torch.Generator) -> torch.Tensor:
    return settings.init_mean + settings.init_std * torch.randn(shape, generator=generator)


def _randn(shape: tuple[int, ...], _settings: AttackSettings, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=generator)


INITIALISERS: dict[str, Callable[[tuple[int, ...], AttackSettings, torch.Generator], torch.Tensor]] = {
    "gray": _gray,
    "normal": _normal,
    "randn": _randn,
}


def init_dummy(shape: tuple[int, ...], settings: AttackSettings, generator: torch.Generator
               ) -> torch.Tensor:
    """A fresh dummy (a leaf tensor that requires grad), already projected onto the constraints."""
    dummy = INITIALISERS[settings.init](shape, settings, generator)
    project_(dummy, settings)
    return dummy.requires_grad_(True)


@torch.no_grad()
def project_(dummy: torch.Tensor, settings: AttackSettings) -> None:
    """Apply the box constraints in place: [0, 1] clamp and/or non-negativity."""
    if settings.clamp:
        dummy.clamp_(0.0, 1.0)
    elif settings.non_negative:
        dummy.clamp_(min=0.0)


def binarize(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """1 where x >= threshold, else 0 (no gradient)."""
    return (x >= threshold).to(x.dtype)


def binarize_ste(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Binary in value, identity in gradient (straight-through estimator)."""
    return x + (binarize(x, threshold) - x).detach()


def as_model_input(dummy: torch.Tensor, settings: AttackSettings) -> torch.Tensor:
    """What the victim model is fed during the optimization (binarized for "in" thresholding)."""
    if settings.threshold_mode == "in":
        return binarize_ste(dummy, settings.threshold)
    return dummy


def finalize(dummy: torch.Tensor, settings: AttackSettings) -> torch.Tensor:
    """The reconstruction an attack returns: detached, binarized for "post" and "in" modes."""
    dummy = dummy.detach()
    if settings.threshold_mode in ("post", "in"):
        return binarize(dummy, settings.threshold)
    return dummy.clone()


def model_logits(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Logits of an ANN on [B, C, H, W], or of a spiking model on [B, C, H, W] (replicated over
    its T steps, i.e. direct encoding) or [T, B, C, H, W] (a per-step sequence)."""
    if not getattr(model, "is_spiking", False):
        return model(inputs)
    if inputs.dim() == 4:
        inputs = inputs.unsqueeze(0).expand(model.time_steps, *inputs.shape)
    return model.forward_sequence(inputs)
