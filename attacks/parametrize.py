"""Encoder-aware parametrization: what an attack optimizes, given how the victim encodes its input.

- ANN and direct encoding: one image [B, C, H, W], fed unchanged on every time step.
- Poisson encoding: spike rates r in [0, 1], [B, C, H, W]. "expected" feeds E[s_t] = r on every
  step (the expected-spike objective: for the first layer, E[W s_t + b] = W r + b); "sample" feeds
  Bernoulli(r) spikes drawn with noise fixed per restart, binary in value and straight-through in
  gradient (the victim saw spikes, not rates).
- Event frames: one free non-negative frame per time step, [T, B, C, H, W].

`encoder_aware` also adapts the plain attacks' settings (DLG/iDLG optimize through
`AttackSettings.time_mode`), so every attack in the strongest mode uses the right dummy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from attacks.settings import AttackSettings, spike_modality
from fedsnn.core.models import ModelSpec


@dataclass(frozen=True)
class Parametrization:
    """A dummy's shape and how it becomes the model's input.

    Attributes:
        shape: shape of the optimized tensor.
        to_model_input: dummy -> what the victim is fed ([B, C, H, W] is replicated over T by
            `attacks.spiking.model_logits`; [T, B, C, H, W] is a sequence).
        per_step: the dummy has a time axis.
    """

    shape: tuple[int, ...]
    to_model_input: Callable[[torch.Tensor], torch.Tensor]
    per_step: bool = False


def _image(spec: ModelSpec, batch: int, settings: AttackSettings, generator: torch.Generator
           ) -> Parametrization:
    del settings, generator
    return Parametrization((batch, spec.in_channels, spec.image_size, spec.image_size), lambda x: x)


def sample_spikes_ste(rates: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Spikes 1[noise < rate] per step ([T, *rates.shape]), with the gradient of the rates
    replicated over T (straight-through)."""
    expected = rates.unsqueeze(0).expand_as(noise)
    spikes = (noise < expected).to(rates.dtype)
    return expected + (spikes - expected).detach()


def _rates(spec: ModelSpec, batch: int, settings: AttackSettings, generator: torch.Generator
           ) -> Parametrization:
    shape = (batch, spec.in_channels, spec.image_size, spec.image_size)
    if settings.rate_mode == "expected":
        return Parametrization(shape, lambda r: r)
    noise = torch.rand((spec.time_steps, *shape), generator=generator)
    return Parametrization(shape, lambda r: sample_spikes_ste(r, noise))


def _frames(spec: ModelSpec, batch: int, settings: AttackSettings, generator: torch.Generator
            ) -> Parametrization:
    del settings, generator
    shape = (spec.time_steps, batch, spec.in_channels, spec.image_size, spec.image_size)
    return Parametrization(shape, lambda x: x, per_step=True)


# encoding -> parametrization (ANNs use "direct")
PARAMETRIZATIONS: dict[str, Callable[[ModelSpec, int, AttackSettings, torch.Generator], Parametrization]] = {
    "direct": _image,
    "poisson": _rates,
    "frames": _frames,
}


def encoding_of(spec: ModelSpec) -> str:
    """The encoding an attacker must invert: the spec's for a spiking model, "direct" for an ANN."""
    return spec.encoding if spec.is_spiking else "direct"


def parametrization(spec: ModelSpec, batch: int, settings: AttackSettings,
                    generator: torch.Generator) -> Parametrization:
    """The dummy to optimize for a victim of `spec` and a client batch of `batch`.

    Raises:
        ValueError: an encoding without a parametrization.
    """
    encoding = encoding_of(spec)
    if encoding not in PARAMETRIZATIONS:
        raise ValueError(f"Unknown encoding {encoding!r}; expected one of {sorted(PARAMETRIZATIONS)}")
    return PARAMETRIZATIONS[encoding](spec, batch, settings, generator)


def encoder_aware(spec: ModelSpec, settings: AttackSettings) -> AttackSettings:
    """Settings of a plain attack (DLG/iDLG) adapted to the victim's encoding: one image shared
    over T for direct encoding and ANNs, rates shared over T (the expected-spike objective) for
    Poisson, the spike-modality preset (a free non-negative frame per step) for event frames."""
    if encoding_of(spec) == "frames":
        return spike_modality(settings)
    return settings.with_(time_mode="shared")
