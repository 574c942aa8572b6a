"""ANN classifiers and their spiking twins.

Both kinds hold their layers in one `nn.Sequential` called `layers`, built by the same function
from a layer namespace (`torch.nn` or spikingjelly's multi-step `layer` module) and an activation
factory (sigmoid/ReLU, or an IF/LIF neuron). So an ANN and its twin have identical parameter names
and shapes, and attacks and aggregation treat them alike.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from types import ModuleType

import torch
from spikingjelly.activation_based import functional
from torch import nn

Activation = Callable[[], nn.Module]


def _conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def lenet_layers(in_channels: int, num_classes: int, image_size: int, activation: Activation,
                 layers: ModuleType = nn) -> OrderedDict[str, nn.Module]:
    """The LeNet of DLG/iDLG: three 5x5 convs (stride 2, 2, 1), an activation after each, a linear
    head over 12 x ceil(H/4) x ceil(W/4) features."""
    side = _conv_out(_conv_out(image_size, 5, 2, 2), 5, 2, 2)
    return OrderedDict(
        conv1=layers.Conv2d(in_channels, 12, 5, stride=2, padding=2), act1=activation(),
        conv2=layers.Conv2d(12, 12, 5, stride=2, padding=2), act2=activation(),
        conv3=layers.Conv2d(12, 12, 5, stride=1, padding=2), act3=activation(),
        flatten=layers.Flatten(),
        fc=layers.Linear(12 * side * side, num_classes),
    )


def lenet5_layers(in_channels: int, num_classes: int, image_size: int, activation: Activation,
                  layers: ModuleType = nn) -> OrderedDict[str, nn.Module]:
    """Classic LeNet-5: conv(6,5x5,pad 2)-pool-conv(16,5x5)-pool-fc 120-fc 84-fc classes."""
    side = _conv_out(image_size, 5, 1, 2) // 2
    side = _conv_out(side, 5, 1, 0) // 2
    if side < 1:
        raise ValueError(f"lenet5 needs images of at least 12x12 pixels, got {image_size}")
    return OrderedDict(
        conv1=layers.Conv2d(in_channels, 6, 5, padding=2), act1=activation(),
        pool1=layers.MaxPool2d(2),
        conv2=layers.Conv2d(6, 16, 5), act2=activation(),
        pool2=layers.MaxPool2d(2),
        flatten=layers.Flatten(),
        fc1=layers.Linear(16 * side * side, 120), act3=activation(),
        fc2=layers.Linear(120, 84), act4=activation(),
        fc3=layers.Linear(84, num_classes),
    )


def mlp_layers(in_channels: int, num_classes: int, image_size: int, activation: Activation,
               layers: ModuleType = nn, *, hidden: int = 256) -> OrderedDict[str, nn.Module]:
    """A two-layer perceptron: flatten, a fully connected layer with bias (C*H*W -> `hidden`), the
    activation, a linear head (`hidden` -> classes). Its first layer is the textbook case of
    analytic gradient inversion (attacks/analytic.py)."""
    if hidden < 1:
        raise ValueError(f"mlp needs a hidden size >= 1, got {hidden}")
    return OrderedDict(
        flatten=layers.Flatten(),
        fc1=layers.Linear(in_channels * image_size * image_size, hidden), act1=activation(),
        fc2=layers.Linear(hidden, num_classes),
    )


class Classifier(nn.Module):
    """An ANN: `forward(x) -> logits` on a [B, C, H, W] batch."""

    is_spiking = False

    def __init__(self, layers: OrderedDict[str, nn.Module]) -> None:
        super().__init__()
        self.layers = nn.Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SpikingClassifier(nn.Module):
    """A multi-step SNN: `forward(x) -> logits`, where logits are the last layer's output averaged
    over the T time steps. `x` is the batch as the data gives it; the encoder turns it into a
    time-major sequence [T, B, ...]. `forward_sequence` takes an already encoded sequence (what an
    attacker optimizes). Neuron state is reset before every forward pass.
    """

    is_spiking = True

    def __init__(self, layers: OrderedDict[str, nn.Module],
                 encoder: Callable[[torch.Tensor], torch.Tensor], time_steps: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(layers)
        self.encoder = encoder
        self.time_steps = time_steps
        functional.set_step_mode(self, "m")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_sequence(self.encoder(x))

    def forward_sequence(self, sequence: torch.Tensor) -> torch.Tensor:
        """Logits for a time-major input [T, B, C, H, W]."""
        if sequence.dim() != 5 or sequence.shape[0] != self.time_steps:
            raise ValueError(
                f"expected a [T={self.time_steps}, B, C, H, W] sequence, got {tuple(sequence.shape)}")
        functional.reset_net(self)
        return self.layers(sequence).mean(0)


def dlg_init_(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """The DLG paper's initialisation: every weight and bias ~ U(-0.5, 0.5). In place."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.rand(parameter.shape, generator=generator) - 0.5)
    return model
