"""A convolutional decoder for readout rows that are flattened feature maps.

LeNet's head (lenet, lenet-snn) reads a 12 × 7 × 7 map: the firing rates (or activations) of the
last conv layer, each entry tied to a patch of the image. A head row laid back out as that map
and decoded by convolutions and upsamplings keeps this locality, which an MLP over the flat row
has to learn from data: on the learned inverter's development clients the conv decoder read more
images than the 2,048-wide MLP from the same simulated updates (docs/results.md, "A conv decoder
and more simulated updates for the learned inverter").
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attacks.readout import readout_module

GLOBAL_CHANNELS = 16  # channels the whole feature vector adds to the map (bias, class, ...)
WIDTH = 64  # channels of the first conv layers; halved at each upsampling


def readout_map_shape(model: nn.Module, image_shape: tuple[int, ...]
                      ) -> tuple[int, int, int] | None:
    """(C, H, W) of the map the model flattens just before its readout, or None when it has no
    flatten step, or the flattened map is not what the readout reads (lenet5's fully connected
    tail, an MLP's input)."""
    flattens = [m for m in model.modules() if isinstance(m, nn.Flatten)]
    if len(flattens) != 1:
        return None
    seen: list[torch.Size] = []
    handle = flattens[0].register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape))
    try:
        with torch.no_grad():
            model(torch.zeros(1, *image_shape))
    finally:
        handle.remove()
    if not seen or len(seen[-1]) < 4:
        return None
    channels, height, width = (int(s) for s in seen[-1][-3:])
    if channels * height * width != readout_module(model).in_features:
        return None  # the map feeds hidden layers, not the readout
    return channels, height, width


class MapDecoder(nn.Module):
    """features [B, D] (the first C·H·W the head row, the rest any per-class extras) -> samples
    [B, *shape] in [0, 1]: the standardized row as a C × H × W map, the whole standardized
    vector through a linear layer as GLOBAL_CHANNELS more channels, two convs, then ×2
    transposed-conv upsamplings (each followed by a conv) until the map covers the image, resized
    to it exactly where the factor is no power of two."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, map_shape: tuple[int, int, int],
                 shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.map_shape, self.shape = map_shape, shape
        channels, height, width = map_shape
        self.extras = nn.Linear(len(mean), GLOBAL_CHANNELS * height * width)
        layers: list[nn.Module] = [*_conv(channels + GLOBAL_CHANNELS, WIDTH), *_conv(WIDTH, WIDTH)]
        wide = WIDTH
        for _ in range(max(0, math.ceil(math.log2(shape[-2] / height)))):
            layers += [nn.ConvTranspose2d(wide, wide // 2, 4, stride=2, padding=1),
                       nn.BatchNorm2d(wide // 2), nn.ReLU(), *_conv(wide // 2, wide // 2)]
            wide //= 2
        layers.append(nn.Conv2d(wide, shape[0], 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = (features - self.mean) / self.std
        channels, height, width = self.map_shape
        row = z[:, :channels * height * width].view(-1, channels, height, width)
        extras = self.extras(z).view(-1, GLOBAL_CHANNELS, height, width)
        out = self.net(torch.cat([row, extras], 1))
        if tuple(out.shape[-2:]) != tuple(self.shape[-2:]):
            out = nn.functional.interpolate(out, size=self.shape[-2:], mode="bilinear",
                                            align_corners=False)
        return torch.sigmoid(out).view(-1, *self.shape)


def _conv(inputs: int, outputs: int) -> list[nn.Module]:
    """3 × 3 conv, batch norm (without it the decoder collapsed to an all-black image on MNIST's
    mostly-zero pixels), ReLU."""
    return [nn.Conv2d(inputs, outputs, 3, padding=1), nn.BatchNorm2d(outputs), nn.ReLU()]
