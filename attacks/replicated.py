"""K victims in one model: the "grouped weights" trick that lets K independent gradient-matching
attacks share one forward/backward pass.

Each of the K targets keeps its own copy of the victim's weights (stacked into [K, ...] tensors,
so targets may even come from different rounds). Convolutions run with `groups = K`, linear layers
as a batched product, and element-wise layers (sigmoid, ReLU, pooling, spiking neurons) see all
K copies side by side in the channel dimension. Replica k's output depends only on replica k's
weights and input, so the gradient of the summed loss with respect to replica k's weights is
exactly target k's own gradient: K per-sample gradients from one `autograd.grad` call, with
stock spikingjelly neurons (torch.func.vmap does not go through them; ../shared/PLATFORM.md).

Supported layers: Conv2d, Linear, Flatten, pooling and any element-wise module (activations,
spikingjelly neurons), in the `layers` Sequential of `fedsnn.core.models` classifiers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional
from spikingjelly.activation_based.base import MemoryModule
from torch import nn

from attacks.matching import total_variation
from attacks.settings import AttackSettings
from attacks.types import Observation
from fedsnn.core.models import ModelSpec, build_model

POOLS = (nn.MaxPool2d, nn.AvgPool2d)


@dataclass
class ReplicatedVictim:
    """K victims of one architecture, their weights stacked along a leading K dimension.

    Attributes:
        spec: the shared model spec.
        model: one rebuilt model; only its module structure (and neuron settings) is used.
        weights: parameter name -> [K, *shape] weights the server sent to each target.
        attacked: names of the parameters whose gradient is observed, in model order.
        observed: the observed gradients, [K, *shape] per name of `attacked`.
        batch_size: the client's batch size (shared by the K targets).
    """

    spec: ModelSpec
    model: nn.Module
    weights: dict[str, torch.Tensor]
    attacked: list[str]
    observed: list[torch.Tensor]
    batch_size: int

    @property
    def size(self) -> int:
        """K, the number of targets."""
        return self.observed[0].shape[0]

    def subset(self, index: torch.Tensor) -> ReplicatedVictim:
        """The victims of the targets in `index` (a LongTensor of positions)."""
        return ReplicatedVictim(self.spec, self.model, {n: w[index] for n, w in self.weights.items()},
                                self.attacked, [o[index] for o in self.observed], self.batch_size)

    def assign(self, slot: int, observation: Observation) -> None:
        """Put `observation`'s victim (weights sent, gradient observed) in row `slot`, so a slot
        whose target finished can take the next one (the engine's batch refilling).

        Raises:
            ValueError: `observation` is not compatible with these victims (see `shape_error`).
        """
        error = shape_error(observation, self.model, self.attacked)
        if error:
            raise ValueError(error)
        with torch.no_grad():
            for name, weight in self.weights.items():
                weight[slot] = observation.global_state[name].detach().to(torch.float32)
            for name, observed in zip(self.attacked, self.observed, strict=True):
                observed[slot] = observation.gradients[name].detach().to(torch.float32)


def compatible_key(observation: Observation) -> tuple[object, ...]:
    """Observations with equal keys can share one replicated victim."""
    return (observation.model_spec, observation.batch_size, tuple(sorted(observation.gradients)))


def replicate(observations: Sequence[Observation]) -> ReplicatedVictim:
    """Stack the victims of `observations` (same spec, batch size and observed gradient names).

    Raises:
        ValueError: the observations are not compatible, a gradient has the wrong shape, or none
            names a parameter of the model.
    """
    if not observations:
        raise ValueError("replicate needs at least one observation")
    keys = {compatible_key(o) for o in observations}
    if len(keys) != 1:
        raise ValueError("replicate needs observations of one model spec, batch size and gradient set")
    first = observations[0]
    model = build_model(first.model_spec)
    model.train()
    check_supported(model)
    names = [name for name, _ in model.named_parameters()]
    attacked = [name for name in names if name in first.gradients]
    if not attacked:
        raise ValueError(f"observation {first.target_id!r}: none of its gradients names a parameter "
                         f"of {first.model_spec.name!r}")
    for observation in observations:
        error = shape_error(observation, model, attacked)
        if error:
            raise ValueError(error)
    weights = {name: torch.stack([o.global_state[name].detach().to(torch.float32) for o in observations])
               for name in names}
    observed = [torch.stack([o.gradients[name].detach().to(torch.float32) for o in observations])
                for name in attacked]
    return ReplicatedVictim(first.model_spec, model, weights, attacked, observed, first.batch_size)


def shape_error(observation: Observation, model: nn.Module, attacked: Sequence[str]) -> str | None:
    """Why `observation` cannot be a row of victims of `model` observed on `attacked`, or None."""
    parameters = dict(model.named_parameters())
    missing = [name for name in attacked if name not in observation.gradients]
    if missing:
        return f"observation {observation.target_id!r}: no gradient for {missing}"
    for name in attacked:
        if observation.gradients[name].shape != parameters[name].shape:
            return (f"observation {observation.target_id!r}: gradient {name!r} has shape "
                    f"{tuple(observation.gradients[name].shape)}, the model's parameter "
                    f"{tuple(parameters[name].shape)}")
    for name, parameter in parameters.items():
        weight = observation.global_state.get(name)
        if weight is None or weight.shape != parameter.shape:
            return (f"observation {observation.target_id!r}: global weight {name!r} is missing or "
                    f"has the wrong shape")
    return None


def check_supported(model: nn.Module) -> None:
    """Raise ValueError when `model.layers` holds a layer the replicated forward cannot run."""
    layers = getattr(model, "layers", None)
    if not isinstance(layers, nn.Sequential):
        raise ValueError("the vectorized engine needs a model with a `layers` nn.Sequential")
    for name, module in layers.named_children():
        if isinstance(module, (nn.Conv2d, nn.Linear, nn.Flatten, *POOLS)):
            continue
        if next(module.parameters(recurse=True), None) is not None:
            raise ValueError(f"the vectorized engine cannot replicate layer {name!r} "
                             f"({type(module).__name__}) with parameters")


def _conv(module: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor
          ) -> torch.Tensor:
    k = weight.shape[0]
    return F.conv2d(x, weight.reshape(-1, *weight.shape[2:]),
                    None if bias is None else bias.reshape(-1), module.stride, module.padding,
                    module.dilation, module.groups * k)


def _linear(weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    out = torch.einsum("mkf,kof->mko", x, weight)
    return out if bias is None else out + bias


def replicated_logits(victim: ReplicatedVictim, weights: dict[str, torch.Tensor], inputs: torch.Tensor
                      ) -> torch.Tensor:
    """Logits [K, B, classes] of the K victims on their inputs.

    Args:
        victim: the replicated victim (for its module structure).
        weights: name -> [K, *shape] weights to use (possibly a subset of targets).
        inputs: [K, B, C, H, W], or [K, T, B, C, H, W] for a spiking model fed per time step. A
            spiking model given [K, B, C, H, W] sees the image at every step (direct encoding).
    """
    k = inputs.shape[0]
    spiking = bool(getattr(victim.model, "is_spiking", False))
    steps = victim.model.time_steps if spiking else 1
    if inputs.dim() == 5:
        inputs = inputs.unsqueeze(1).expand(k, steps, *inputs.shape[1:])
    _, _, batch, channels, height, width = inputs.shape
    # layout: [T*B, K*C, H, W] for convolutions, [T*B, K, F] after the flatten
    x = inputs.permute(1, 2, 0, 3, 4, 5).reshape(steps * batch, k * channels, height, width)
    if spiking:
        functional.reset_net(victim.model)
    for name, module in victim.model.layers.named_children():
        weight = weights.get(f"layers.{name}.weight")
        bias = weights.get(f"layers.{name}.bias")
        if isinstance(module, nn.Conv2d):
            x = _conv(module, weight, bias, x)
        elif isinstance(module, nn.Linear):
            x = _linear(weight, bias, x)
        elif isinstance(module, nn.Flatten):
            x = x.reshape(x.shape[0], k, -1)
        elif isinstance(module, POOLS):
            x = F.max_pool2d(x, module.kernel_size, module.stride, module.padding) \
                if isinstance(module, nn.MaxPool2d) else \
                F.avg_pool2d(x, module.kernel_size, module.stride, module.padding)
        elif isinstance(module, MemoryModule):  # a neuron: element-wise over a [T, ...] sequence
            x = module(x.reshape(steps, batch, *x.shape[1:])).reshape(x.shape)
        else:  # element-wise activation
            x = module(x)
    logits = x.reshape(steps, batch, k, -1).mean(0)
    return logits.transpose(0, 1)


def per_target_gradients(victim: ReplicatedVictim, weights: dict[str, torch.Tensor],
                         loss: torch.Tensor) -> list[torch.Tensor]:
    """Each target's own gradient of `loss` ([K], one client loss per target) with respect to
    its attacked weights, kept differentiable (create_graph)."""
    return list(torch.autograd.grad(loss.sum(), [weights[n] for n in victim.attacked],
                                    create_graph=True))


def per_target_distance(dummy: Sequence[torch.Tensor], observed: Sequence[torch.Tensor],
                        distance: str) -> torch.Tensor:
    """Gradient distance per target [K]: "l2" (sum of squared differences, as
    `attacks.matching.l2_distance`) or "cosine" (as `attacks.matching.cosine_distance`)."""
    def per_row(values: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        return sum(values(d, o).flatten(1).sum(1) for d, o in zip(dummy, observed, strict=True))  # type: ignore[return-value]

    if distance == "l2":
        return per_row(lambda d, o: (d - o) ** 2)
    if distance == "cosine":
        dot = per_row(lambda d, o: d * o)
        dummy_norm = torch.sqrt(per_row(lambda d, _o: d ** 2))
        observed_norm = torch.sqrt(per_row(lambda _d, o: o ** 2))
        return 1.0 - dot / (dummy_norm * observed_norm + 1e-12)
    raise ValueError(f"Unknown distance {distance!r}; expected 'l2' or 'cosine'")


def matching_objectives(victim: ReplicatedVictim, settings: AttackSettings, inputs: torch.Tensor,
                        prior: torch.Tensor, *, labels: torch.Tensor | None = None,
                        soft_labels: torch.Tensor | None = None) -> torch.Tensor:
    """Each target's gradient-matching objective [n]: the distance between its victim's gradient
    on `inputs` ([n, *dummy shape]) and its observed one, plus the TV prior on `prior` (the dummy).
    The client loss is the mean cross-entropy on fixed `labels` [n, B] (iDLG) or on probabilities
    `soft_labels` [n, B, classes] (DLG's softmaxed logits, GRNN's label branch)."""
    weights = {name: w.requires_grad_(name in victim.attacked) for name, w in victim.weights.items()}
    logits = replicated_logits(victim, weights, inputs)
    n, batch, classes = logits.shape
    if soft_labels is None:
        assert labels is not None
        client_loss = F.cross_entropy(logits.reshape(-1, classes), labels.reshape(-1), reduction="none")
    else:
        soft = soft_labels.reshape(-1, classes)
        client_loss = torch.sum(-soft * F.log_softmax(logits.reshape(-1, classes), -1), -1)
    gradients = per_target_gradients(victim, weights, client_loss.reshape(n, batch).mean(1))
    objective = per_target_distance(gradients, victim.observed, settings.distance)
    if settings.tv_weight > 0:
        objective = objective + settings.tv_weight * torch.stack([total_variation(p) for p in prior])
    return objective
