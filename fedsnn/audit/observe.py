"""Turn what the server received into an attack `Observation`.

A client replies with weights. For a FedSGD reply (one plain SGD step on one batch) the gradient
is exactly g = (w_sent - w_returned) / lr. For a FedAvg reply (several local steps, possibly with
Adam) (w_sent - w_returned) / (lr * steps) is only an approximation of the average gradient, and
the observation says so (`exact_gradient=False`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from attacks import Observation
from fedsnn.models import ModelSpec, build_model


def parameter_names(spec: ModelSpec) -> list[str]:
    """Names of the trainable parameters of the model described by `spec`."""
    return [name for name, _ in build_model(spec).named_parameters()]


def gradient_from_update(sent: Mapping[str, torch.Tensor], returned: Mapping[str, torch.Tensor],
                         names: list[str], *, lr: float, steps: int) -> dict[str, torch.Tensor]:
    """(w_sent - w_returned) / (lr * steps) per parameter, computed in float64.

    `sent` is first rounded to float32, the precision the client trained in, so a FedSGD step
    replied in float64 gives back the client's gradient to float64 precision.

    Raises:
        KeyError / ValueError: a parameter is missing or has another shape.
    """
    if lr <= 0 or steps <= 0:
        raise ValueError(f"need lr > 0 and steps > 0 to estimate a gradient, got {lr}, {steps}")
    gradients = {}
    for name in names:
        before, after = sent[name].float().double(), returned[name].double()
        if before.shape != after.shape:
            raise ValueError(f"{name}: sent {tuple(before.shape)}, got back {tuple(after.shape)}")
        gradients[name] = ((before - after) / (lr * steps)).float()
    return gradients


def observe_update(target_id: str, spec: ModelSpec, sent: Mapping[str, torch.Tensor],
                   returned: Mapping[str, torch.Tensor], *, lr: float, steps: int,
                   batch_size: int) -> Observation:
    """The attacker's view of one client's reply (no ground truth in it)."""
    names = parameter_names(spec)
    return Observation(
        target_id=target_id, model_spec=spec,
        global_state={k: v.detach().float().clone() for k, v in sent.items()},
        gradients=gradient_from_update(sent, returned, names, lr=lr, steps=steps),
        batch_size=batch_size, learning_rate=lr, local_steps=steps,
        exact_gradient=steps == 1)
