"""The judge of event datasets: the study's DVSGestureSNN (Table I), trained on spike frames.

Table I: Conv(2→64, 3x3, stride 1) → BN → LIF(ATan); then three blocks Conv(c→2c, 3x3, stride 2)
→ BN → LIF(ATan) → ResidualBlock(2c) up to 512 channels; global average pooling; Linear(512,
classes); the logits averaged over the time steps. A residual block is Conv-BN-LIF-Conv-BN with
the block's input added before the last LIF (a spiking ResNet basic block).

`WIDTHS` names the channel plans: "table-i" (64, 128, 256, 512) for DVS128 Gesture, and "small"
(16, 32, 64, 128) for `dvs-digits`, which a quarter of the width already classifies well and which
trains in minutes on a CPU. Judges are cached with the image judges (`fedsnn.core.judges`), keyed by
dataset fingerprint, architecture, split and training settings; they train like every judge
(`fedsnn.core.judges.fit`: early stopping on a validation slice, bounded time; Adam at a constant
learning rate).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from torch import nn

from fedsnn.core.data import ImageData
from fedsnn.core.judges.base import Judge, cache_dir, cached_judge, fit_judge, judge_key
from fedsnn.core.judges.fit import JudgeTraining

WIDTHS: dict[str, tuple[int, ...]] = {"table-i": (64, 128, 256, 512), "small": (16, 32, 64, 128)}
WIDTHS_BY_SOURCE = {"dvsgesture": "table-i", "dvs-digits": "small"}


def _lif() -> nn.Module:
    return neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), detach_reset=True,
                          step_mode="m")


def _conv_bn(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [layer.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            layer.BatchNorm2d(c_out)]


class ResidualBlock(nn.Module):
    """Conv-BN-LIF-Conv-BN, plus the input, then LIF; on [T, B, C, H, W]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(channels, channels, 1), _lif(),
                                  *_conv_bn(channels, channels, 1))
        self.out = _lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x) + x)


class DVSGestureSNN(nn.Module):
    """The study's DVS judge (Table I): `forward(x [B, T, C, H, W]) -> logits [B, classes]`.

    Example:
        >>> net = DVSGestureSNN(2, 11, widths=WIDTHS["small"])
        >>> net(torch.zeros(3, 4, 2, 32, 32)).shape
        torch.Size([3, 11])
    """

    def __init__(self, in_channels: int, num_classes: int,
                 widths: Sequence[int] = WIDTHS["table-i"]) -> None:
        super().__init__()
        blocks: list[nn.Module] = [*_conv_bn(in_channels, widths[0], 1), _lif()]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            blocks += [*_conv_bn(c_in, c_out, 2), _lif(), ResidualBlock(c_out)]
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Linear(widths[-1], num_classes)
        functional.set_step_mode(self.features, "m")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"DVSGestureSNN expects spike frames [B, T, C, H, W], got {tuple(x.shape)}")
        functional.reset_net(self)
        features = self.features(x.transpose(0, 1))      # [T, B, C', H', W']
        pooled = features.mean(dim=(-2, -1))              # global average pooling
        return self.classifier(pooled).mean(0)            # time-averaged logits


def widths_for(data: ImageData) -> str:
    """The channel plan for a dataset: Table I's for DVS128 Gesture, "small" for dvs-digits."""
    return WIDTHS_BY_SOURCE.get(data.name.partition(":")[0], "table-i")


def build_dvs_judge(data: ImageData, widths: str | None = None) -> DVSGestureSNN:
    """An untrained DVS judge shaped for `data`."""
    plan = widths or widths_for(data)
    if plan not in WIDTHS:
        raise ValueError(f"Unknown DVS judge widths {plan!r}; expected one of {sorted(WIDTHS)}")
    return DVSGestureSNN(data.in_channels, data.num_classes, WIDTHS[plan])


# Training of each plan: (most epochs, Adam learning rate); early stopping usually ends sooner.
TRAINING = {"table-i": (30, 1e-3), "small": (12, 5e-3)}


def load_dvs_judge(data: ImageData, *, epochs: int | None = None, seed: int = 0,
                   directory: Path | None = None, widths: str | None = None,
                   split: str = "train") -> Judge:
    """The cached DVS judge for an event dataset, fit on `split` on first use (early-stopped,
    `fedsnn.core.judges.fit`); its `test_accuracy` is measured on the other split.

    Example:
        >>> from fedsnn.core.data import load_dataset
        >>> load_dvs_judge(load_dataset("dvs-digits")).test_accuracy > 0.9  # doctest: +SKIP
        True
    """
    plan = widths or widths_for(data)
    if plan not in TRAINING:
        raise ValueError(f"Unknown DVS judge widths {plan!r}; expected one of {sorted(TRAINING)}")
    training = JudgeTraining(max_epochs=epochs or TRAINING[plan][0], lr=TRAINING[plan][1],
                             batch_size=32)
    architecture = f"dvs-gesture-snn-{plan}"
    key = judge_key(data, epochs=training.max_epochs, seed=seed, split=split,
                    architecture=f"{architecture}-lr{training.lr:g}", training=training)

    def train() -> Judge:
        with torch.random.fork_rng(devices=[]):  # seeded initialisation, global RNG untouched
            torch.manual_seed(seed)
            model = build_dvs_judge(data, plan)
        return fit_judge(model, data, training, seed=seed, split=split, key=key,
                         eval_batch_size=64)

    return cached_judge(directory or cache_dir(), key, build=lambda: build_dvs_judge(data, plan),
                        train=train, meta={"dataset": data.name, "architecture": architecture,
                                           "widths": list(WIDTHS[plan]),
                                           "epochs": training.max_epochs, "lr": training.lr,
                                           "seed": seed})
