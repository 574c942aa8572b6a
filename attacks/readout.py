"""The readout layer's input: what the last linear layer sees, from inputs or from its gradient.

For a classifier whose head is z = W h + b (an SNN's head averages W s_t + b over its T steps, so
h = mean_t s_t is the last spiking layer's firing-rate map), the mean-loss gradient of one sample
is dL/dW = δ hᵀ and dL/db = δ: h = dL/dW[j] / dL/db[j] for any class j, exactly. A batch of B gives
Σ_b δ_b h_bᵀ / B, of rank ≤ B; h ≥ 0 (rates, sigmoid or ReLU outputs), so the separable
factorization of attacks/separable.py splits it into the B feature vectors whenever each sample
has a feature no other sample has.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from attacks.idlg import last_linear_names
from attacks.separable import Factors, separable_factors
from attacks.types import Observation
from fedsnn.core.models import build_model


def readout_module(model: nn.Module) -> nn.Module:
    """The model's last `nn.Linear` (its readout)."""
    weight_name, _ = last_linear_names(model)
    return dict(model.named_modules())[weight_name.removesuffix(".weight")]


def readout_features(model: nn.Module, inputs: torch.Tensor,
                     forward: Callable[[nn.Module, torch.Tensor], object] | None = None
                     ) -> torch.Tensor:
    """[N, F] inputs of the readout layer while `model` processes `inputs` (time-averaged for a
    spiking model: the firing-rate map). `forward(model, inputs)` runs the model (default: its
    `__call__`, i.e. with its own input encoder, as a client runs it)."""
    captured: list[torch.Tensor] = []
    handle = readout_module(model).register_forward_hook(
        lambda _m, args, _out: captured.append(args[0].detach()))
    try:
        with torch.no_grad():
            (forward or (lambda m, x: m(x)))(model, inputs)
    finally:
        handle.remove()
    features = captured[-1]
    return features.mean(0) if features.dim() == 3 else features  # spiking: [T, N, F]


def observed_features(observation: Observation) -> Factors:
    """The readout inputs of the client's samples, factored out of the head's gradient (at most
    `batch_size` rows, in no particular order).

    Raises:
        ValueError: the head's weight or bias gradient is missing, zero, or not separable.
    """
    weight_name, bias_name = last_linear_names(build_model(observation.model_spec))
    weight = observation.gradients.get(weight_name)
    bias = observation.gradients.get(bias_name) if bias_name else None
    if weight is None or bias is None:
        raise ValueError(f"the readout features need the gradients of {weight_name} and its bias")
    return separable_factors(weight, bias, observation.batch_size)



def _encoded_forward(model: nn.Module, inputs: torch.Tensor) -> object:
    """Images through the model's own encoder; per-step sequences [T, B, ...] as they are."""
    if inputs.dim() == 5:
        return model.forward_sequence(inputs)
    return model(inputs)


def readout_distance(model: nn.Module, inputs: torch.Tensor, observed: torch.Tensor) -> float:
    """Σ_b ||h(x̂_b) - h_b||² / Σ_b ||h_b||²: the readout features of `inputs` through `model`
    against the `observed` ones [K, F] (`observed_features(...).rows`), rows matched by an optimal
    assignment; inf for inputs the model does not take or fewer rows than observed."""
    try:
        features = readout_features(model, inputs.detach().float(), forward=_encoded_forward)
    except (RuntimeError, ValueError):
        return float("inf")
    features = features.double()
    observed = observed.double()
    if len(features) < len(observed) or not bool(torch.isfinite(features).all()):
        return float("inf")
    cost = torch.cdist(observed, features) ** 2
    rows, columns = linear_sum_assignment(cost.numpy())
    scale = float((observed ** 2).sum())
    return float(cost[rows, columns].sum()) / scale if scale > 0 else float("inf")
