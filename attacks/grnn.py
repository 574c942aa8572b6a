"""GRNN (Ren et al. 2022): a generator maps fixed noise to a candidate sample (image branch) and a
soft label (label branch); its weights are trained so that the candidate's gradient matches the
observed one (gradient distance + TV prior). Generator and defaults follow the reference code
(https://github.com/Rand2AI/GRNN): GLU up-sampling blocks, sigmoid output, softmax label,
128-d noise, RMSprop(lr 1e-4, momentum 0.99), TV weight 1e-3 for LeNet. The reference loss also has
a Wasserstein term between the gradients; it is left out here.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from attacks.matching import (final_loss, matching_loss, optimize, rebuild_victim, soft_cross_entropy,
                              stop_threshold)
from attacks.settings import AttackSettings
from attacks.spiking import as_model_input, dummy_shape, finalize
from attacks.types import Observation, Reconstruction
from fedsnn.core.models import ModelSpec


def _up_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Nearest-neighbour x2 up-sampling, 3x3 conv, batch norm, GLU (halves the channels)."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                         nn.Conv2d(in_channels, out_channels * 2, 3, 1, 1),
                         nn.BatchNorm2d(out_channels * 2), nn.GLU(dim=1))


class Decoder(nn.Module):
    """GRNN's image branch after its stem: [B, width * 2**blocks, 4, 4] -> GLU up-sampling blocks,
    a 3x3 conv, sigmoid, resized to `size` -> [B, out_channels, size, size] in (0, 1)."""

    def __init__(self, width: int, blocks: int, out_channels: int, size: int) -> None:
        super().__init__()
        self.size = size
        self.blocks = nn.Sequential(*[_up_block(width * 2 ** (b + 1), width * 2 ** b)
                                      for b in reversed(range(blocks))])
        self.head = nn.Conv2d(width, out_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.sigmoid(self.head(self.blocks(x)))
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return x


class Generator(nn.Module):
    """Noise [B, noise_dim] -> (images [B, out_channels, size, size] in (0, 1), soft labels [B, K]).

    The image branch (a transposed-conv stem on the noise as a 1x1 map, then the `Decoder`) starts
    at 4x4 and doubles until it covers `size`, then resizes to `size`.
    """

    def __init__(self, noise_dim: int, num_classes: int, out_channels: int, size: int,
                 width: int = 16) -> None:
        super().__init__()
        blocks = max(1, math.ceil(math.log2(size / 4)))
        channels = width * 2 ** blocks
        self.label_branch = nn.Linear(noise_dim, num_classes)
        self.stem = nn.Sequential(nn.ConvTranspose2d(noise_dim, channels * 2, 4, 1, 0), nn.GLU(dim=1))
        self.decoder = Decoder(width, blocks, out_channels, size)

    def forward(self, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        soft_labels = F.softmax(self.label_branch(noise), dim=-1)
        return self.decoder(self.stem(noise[:, :, None, None])), soft_labels


def to_dummy(images: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Generator output [..., B, T*C, H, W] -> the dummy shape ([..., B, C, H, W] or
    [..., T, B, C, H, W]); leading dimensions (K generators) are kept."""
    if len(shape) == 4:
        return images
    steps, batch = shape[0], shape[1]
    return images.reshape(*images.shape[:-4], batch, steps, *shape[2:]).transpose(-5, -4)


def build_generator(spec: ModelSpec, settings: AttackSettings, shape: tuple[int, ...],
                    batch_size: int, seed: int) -> tuple[Generator, torch.Tensor]:
    """The generator of a restart seeded `seed` (in training mode) and its fixed noise [B, noise_dim]."""
    steps = shape[0] if len(shape) == 5 else 1
    generator_rng = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = Generator(settings.grnn_noise_dim, spec.num_classes, spec.in_channels * steps,
                        spec.image_size)
    net.train()
    return net, torch.randn((batch_size, settings.grnn_noise_dim), generator=generator_rng)


def grnn(observation: Observation, settings: AttackSettings, *, seed: int,
         deadline: float | None = None) -> Reconstruction:
    """GRNN: train a generator so its sample's gradient matches the observation (one restart)."""
    started = time.monotonic()
    victim = rebuild_victim(observation)
    shape = dummy_shape(observation.model_spec, observation.batch_size, settings)
    net, noise = build_generator(observation.model_spec, settings, shape, observation.batch_size, seed)

    def objective() -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        images, soft_labels = net(noise)
        dummy = to_dummy(images, shape)
        loss = matching_loss(victim, as_model_input(dummy, settings),
                             lambda logits: soft_cross_entropy(logits, soft_labels), settings,
                             image_for_prior=dummy)
        return loss, (dummy.detach().clone(), soft_labels.detach().clone())

    outcome = optimize(list(net.parameters()), objective, settings, deadline=deadline,
                       stop_below=stop_threshold(observation, settings))
    best_inputs, best_soft = outcome.best
    inputs = finalize(best_inputs, settings)
    return Reconstruction(
        target_id=observation.target_id, attack="grnn", inputs=inputs, labels=best_soft.argmax(-1),
        matching_loss=final_loss(victim, inputs,
                                 lambda logits: soft_cross_entropy(logits, best_soft), settings),
        loss_history=outcome.history, status=outcome.status, message=outcome.message,
        seconds=time.monotonic() - started)
