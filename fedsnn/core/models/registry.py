"""Build a model by name. The spec holds what the attacker also knows (public hyper-parameters)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

import torch
from spikingjelly.activation_based import layer, neuron, surrogate
from torch import nn

from fedsnn.core.config import ModelSettings
from fedsnn.core.models.encoders import build_encoder
from fedsnn.core.models.nets import (Activation, Classifier, SpikingClassifier, dlg_init_, lenet5_layers,
                                lenet_layers, mlp_layers)

if TYPE_CHECKING:
    from fedsnn.core.config import RunConfig

SURROGATES: dict[str, Callable[[], nn.Module]] = {
    "atan": surrogate.ATan,
    "sigmoid": surrogate.Sigmoid,
    "piecewise-quadratic": surrogate.PiecewiseQuadratic,
    "soft-sign": surrogate.SoftSign,
    "erf": surrogate.Erf,
}

# name -> (layer builder, ANN activation)
ARCHITECTURES: dict[str, tuple[Callable[..., object], Activation]] = {
    "lenet": (lenet_layers, nn.Sigmoid),
    "lenet5": (lenet5_layers, nn.ReLU),
    "mlp": (mlp_layers, nn.ReLU),
}
# name -> the builder's size options, read from the spec (architectures not listed take none)
ARCHITECTURE_OPTIONS: dict[str, Callable[[ModelSpec], dict[str, object]]] = {
    "mlp": lambda spec: {"hidden": spec.mlp_hidden},
}
MODELS = tuple(sorted([*ARCHITECTURES, *(f"{name}-snn" for name in ARCHITECTURES)]))


@dataclass(frozen=True)
class ModelSpec(ModelSettings):
    """Everything needed to rebuild a model of the federation (minus its weights).

    These are public hyper-parameters: the server knows them, and so does an attacker.
    """

    name: str = "lenet"
    in_channels: int = 1
    num_classes: int = 10
    image_size: int = 28

    @property
    def is_spiking(self) -> bool:
        return self.name.endswith("-snn")

    @property
    def architecture(self) -> str:
        return self.name.removesuffix("-snn")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _neuron_factory(spec: ModelSpec) -> Activation:
    if spec.surrogate not in SURROGATES:
        raise ValueError(f"Unknown surrogate {spec.surrogate!r}; expected one of {sorted(SURROGATES)}")
    common = dict(v_threshold=float(spec.v_threshold), detach_reset=spec.detach_reset, step_mode="m")
    if spec.neuron == "if":
        return lambda: neuron.IFNode(surrogate_function=SURROGATES[spec.surrogate](), **common)
    if spec.neuron == "lif":
        return lambda: neuron.LIFNode(tau=float(spec.tau),
                                      surrogate_function=SURROGATES[spec.surrogate](), **common)
    raise ValueError(f"Unknown neuron {spec.neuron!r}; expected one of ['if', 'lif']")


def build_model(spec: ModelSpec, *, dlg_init: bool = False, seed: int | None = None,
                encoder_seed: int = 0) -> nn.Module:
    """A freshly initialised model.

    Args:
        spec: architecture and neuron settings.
        dlg_init: use the DLG paper's U(-0.5, 0.5) initialisation instead of PyTorch's default.
        seed: seeds the weight initialisation (None: the global RNG).
        encoder_seed: seeds a Poisson encoder's private random stream.

    Example:
        >>> model = build_model(ModelSpec("lenet-snn"), seed=0)
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    if spec.architecture not in ARCHITECTURES or spec.name not in MODELS:
        raise ValueError(f"Unknown model {spec.name!r}; expected one of {list(MODELS)}")
    builder, ann_activation = ARCHITECTURES[spec.architecture]
    options = ARCHITECTURE_OPTIONS.get(spec.architecture, lambda _spec: {})(spec)
    with torch.random.fork_rng(devices=[]) if seed is not None else nullcontext():
        if seed is not None:
            torch.manual_seed(seed)
        if spec.is_spiking:
            layers = builder(spec.in_channels, spec.num_classes, spec.image_size,
                             _neuron_factory(spec), layer, **options)
            encoder = build_encoder(spec.encoding, spec.time_steps, seed=encoder_seed)
            model: nn.Module = SpikingClassifier(layers, encoder, spec.time_steps)
        else:
            model = Classifier(builder(spec.in_channels, spec.num_classes, spec.image_size,
                                       ann_activation, nn, **options))
        if dlg_init:
            dlg_init_(model)
    return model



def spec_for(config: RunConfig, in_channels: int, num_classes: int, image_size: int) -> ModelSpec:
    """The model spec of a run: the dataset's shape, the config's `model` as its name, and every
    other spec field from the run-config field of the same name (time steps, neuron, ...)."""
    shape = {"in_channels": in_channels, "num_classes": num_classes, "image_size": image_size}
    settings = {field.name: getattr(config, field.name) for field in fields(ModelSpec)
                if field.name != "name" and field.name not in shape}
    return ModelSpec(name=config.model, **shape, **settings)
