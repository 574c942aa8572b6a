"""iDLG (Zhao et al. 2020): the label is read off the last linear layer's gradient, then only the
input is optimized.

With mean cross-entropy, the gradient of the last linear layer for one sample is
dL/dW[i, :] = (p_i - y_i) * h and dL/db[i] = p_i - y_i, where h >= 0 is the previous layer's output
(sigmoid/ReLU activations, or a spiking layer's firing rates). So the true class is the row whose
weight-gradient sum is negative. In an SNN, h can be all zero (no spikes reach the head): every
weight row is then zero, and the bias gradient, whose only negative entry is the true class, decides.
"""

from __future__ import annotations

import torch
from torch import nn

from attacks.dlg import optimize_inputs
from attacks.settings import AttackSettings
from attacks.types import Observation, Reconstruction
from fedsnn.core.models import build_model


def last_linear_names(model: nn.Module) -> tuple[str, str | None]:
    """Parameter names (weight, bias or None) of the last `nn.Linear` in `model`.

    Raises:
        ValueError: the model has no linear layer.
    """
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ValueError("iDLG needs a model whose last layer is linear; found no nn.Linear")
    last = dict(model.named_modules())[names[-1]]
    return f"{names[-1]}.weight", (f"{names[-1]}.bias" if last.bias is not None else None)


def label_scores(observation: Observation) -> torch.Tensor:
    """One score per class, lowest for the classes in the batch: the weight-gradient row sums of
    the last linear layer, or its bias gradient when every weight row is zero."""
    weight_name, bias_name = last_linear_names(build_model(observation.model_spec))
    weight = observation.gradients.get(weight_name)
    bias = observation.gradients.get(bias_name) if bias_name else None
    if weight is not None and bool((weight != 0).any()):
        return weight.detach().sum(dim=-1)
    if bias is not None:
        return bias.detach().clone()
    if weight is not None:
        return weight.detach().sum(dim=-1)
    raise ValueError(f"iDLG: observation {observation.target_id!r} has no gradient for the last "
                     f"linear layer ({weight_name!r}); send the full gradient or use DLG")


def infer_labels(observation: Observation) -> torch.Tensor:
    """Labels [B] inferred from the gradient alone.

    For B = 1 (the iDLG setting) the class with the lowest score. For B > 1 (a heuristic) the
    classes with a negative score, most negative first, cut or padded (with the most negative) to B.
    """
    scores = label_scores(observation)
    order = torch.argsort(scores)
    batch = observation.batch_size
    if batch == 1:
        return order[:1].clone()
    present = [int(c) for c in order if scores[c] < 0][:batch] or [int(order[0])]
    present += [present[0]] * (batch - len(present))
    return torch.tensor(present, dtype=torch.long)


def idlg(observation: Observation, settings: AttackSettings, *, seed: int,
         deadline: float | None = None) -> Reconstruction:
    """iDLG: infer the labels, then optimize the input alone (one restart)."""
    return optimize_inputs(observation, settings, seed=seed, deadline=deadline,
                           labels=infer_labels(observation), attack="idlg")
