"""R-GAP-style recursive recovery for conv-first models (Zhu & Blaschko 2021), batch 1.

Walking back from the head: the last linear layer's gradients give its input h exactly
(h = dW[i] / db[i]) and the error it sends back. For each earlier (conv, activation) pair, an
invertible activation turns its output h into the conv's pre-activation z, and the conv's input u
must satisfy two linear systems at once:

    conv(u) + b = z                      (the forward pass)
    sum_p delta(p) patch_p(u) = dL/dK    (the weight gradient, with delta = dL/dz known)

Stacked, they determine u when their rank equals the number of unknowns; u is then the previous
layer's output, and the walk goes on down to the image. Every step says whether it was
determined. A spiking neuron (or ReLU, max-pooling) is not invertible: h does not give z, and the
walk stops there with an honest NotDeterminedError; for a spiking network the first conv layer's
own gradient alone (C_out * (C_in k^2 + 1) equations) cannot determine both the image and the
per-position errors (attacks/analytic.py explains the fully connected case, which can).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from attacks.matching import Victim
from attacks.types import NotDeterminedError, Observation, Recovery

# Pre-activations are taken from outputs clamped this far inside (0, 1) for the sigmoid's inverse.
SIGMOID_MARGIN = 1e-7
# The stacked system counts as determined when every Cholesky pivot of its normal matrix exceeds
# this squared fraction of the largest (a condition number below ~1/CONDITION_TOLERANCE).
CONDITION_TOLERANCE = 1e-6

# activation type -> (pre-activation from output, derivative from output)
INVERTIBLE: dict[type[nn.Module], tuple[Callable[[torch.Tensor], torch.Tensor],
                                        Callable[[torch.Tensor], torch.Tensor]]] = {
    nn.Sigmoid: (lambda h: torch.logit(h.clamp(SIGMOID_MARGIN, 1 - SIGMOID_MARGIN)),
                 lambda h: h * (1 - h)),
    nn.Tanh: (lambda h: torch.atanh(h.clamp(-1 + SIGMOID_MARGIN, 1 - SIGMOID_MARGIN)),
              lambda h: 1 - h ** 2),
    nn.Identity: (lambda h: h, torch.ones_like),
}


def _conv_systems(conv: nn.Conv2d, delta: torch.Tensor, in_shape: tuple[int, ...]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Matrices of u -> conv(u) (no bias) and u -> dL/dK for a conv input of `in_shape`."""
    unknowns = int(torch.tensor(in_shape).prod())
    basis = torch.eye(unknowns, dtype=torch.float64).reshape(unknowns, *in_shape)
    weight = conv.weight.detach().double()
    forward = F.conv2d(basis, weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    patches = F.unfold(basis, conv.kernel_size, conv.dilation, conv.padding, conv.stride)
    gradient = torch.einsum("op,nkp->nok", delta.reshape(delta.shape[0], -1), patches)
    return forward.reshape(unknowns, -1).T, gradient.reshape(unknowns, -1).T


def _in_shape(model: nn.Module, names: list[str], index: int, image: tuple[int, ...]) -> tuple[int, ...]:
    """The input shape of layer `names[index]` (one forward pass of a zero image)."""
    shapes: dict[str, tuple[int, ...]] = {}
    modules = dict(model.named_modules())

    def record(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
            shapes.setdefault(name, tuple(args[0].shape[1:]))
        return hook

    handles = [modules[n].register_forward_hook(record(n)) for n in names]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *image))
    finally:
        for handle in handles:
            handle.remove()
    return shapes[names[index]]


def _solve_determined(system: torch.Tensor, target: torch.Tensor, what: str) -> torch.Tensor:
    """Least squares through the normal equations (Cholesky: ~8x faster than an SVD here).

    Raises:
        NotDeterminedError: the normal matrix is singular to working precision (a pivot below
            CONDITION_TOLERANCE squared times the largest).
    """
    normal = system.T @ system
    factor, info = torch.linalg.cholesky_ex(normal)
    pivots = torch.diagonal(factor) ** 2
    if int(info) != 0 or pivots.min() <= CONDITION_TOLERANCE ** 2 * pivots.max():
        raise NotDeterminedError(f"{what}: singular to working precision, not determined")
    return torch.cholesky_solve((system.T @ target).unsqueeze(1), factor)[:, 0]


def recover_conv_chain(observation: Observation, victim: Victim) -> Recovery:
    """The image of a sequential ANN (convs and linear layers with invertible activations).

    Raises:
        NotDeterminedError: batch > 1, a layer that cannot be inverted, or a system that does not
            determine its unknowns (the message names the layer and the counts).
    """
    spec = observation.model_spec
    if spec.is_spiking:
        raise NotDeterminedError(
            "conv-first spiking model: spikes are not invertible, so the head's input does not give "
            "the pre-activations below it, and the first conv layer's gradient alone has far fewer "
            "equations than unknowns (image + per-position errors summed over T): not determined")
    if observation.batch_size != 1:
        raise NotDeterminedError("the R-GAP walk here handles batch 1 only")
    model, gradients = victim.model, observation.gradients
    sequence = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    names = [n for n, _ in sequence]
    head_index = max(i for i, (_, m) in enumerate(sequence) if isinstance(m, nn.Linear))
    image = (spec.in_channels, spec.image_size, spec.image_size)
    steps: list[str] = []
    pre: torch.Tensor | None = None  # the pre-activation of the layer being inverted
    delta_output = gradients[f"{sequence[head_index][0]}.bias"].double()  # dL/d(head output)
    output = torch.empty(0, dtype=torch.float64)
    for index in range(head_index, -1, -1):
        name, module = sequence[index]
        if isinstance(module, nn.Flatten):
            continue
        if isinstance(module, nn.Linear):
            # dW = delta uᵀ: the input is the weight gradient's rows divided by the error
            if delta_output.norm() == 0:
                raise NotDeterminedError(f"layer {name!r}: zero error signal, input not determined")
            delta = delta_output.reshape(-1)
            output = (delta @ gradients[f"{name}.weight"].double()) / (delta @ delta)
            delta_output = module.weight.detach().double().T @ delta
            steps.append(name)
            continue
        if type(module) in INVERTIBLE:
            inverse, derivative = INVERTIBLE[type(module)]
            shape = _in_shape(model, names, index, image)
            output = output.reshape(shape)
            pre, delta_output = inverse(output), delta_output.reshape(shape) * derivative(output)
            continue
        if not isinstance(module, nn.Conv2d):
            raise NotDeterminedError(f"layer {name!r} ({type(module).__name__}) is not invertible: "
                                     f"the walk from the head stops there, after {steps or 'no'} "
                                     "recovered conv inputs")
        in_shape = _in_shape(model, names, index, image)
        forward, gradient = _conv_systems(module, delta_output, in_shape)
        bias = module.bias.detach().double() if module.bias is not None else torch.zeros(forward.shape[0])
        pre = output if pre is None else pre  # no activation between this conv and the next
        target_forward = (pre.reshape(len(bias), -1) - bias.unsqueeze(1)).reshape(-1)
        system = torch.cat([forward, gradient])
        target = torch.cat([target_forward, gradients[f"{name}.weight"].double().reshape(-1)])
        output = _solve_determined(system, target, f"layer {name!r}: {system.shape[0]} equations "
                                   f"({forward.shape[0]} forward + {gradient.shape[0]} gradient) "
                                   f"for {system.shape[1]} unknowns")
        delta_output = forward.T @ delta_output.reshape(-1)                 # dL/d(conv input)
        steps.append(name)
        pre = None
    recovered = output.reshape(1, *image).clamp(0.0, 1.0).float()
    return recovered, f"R-GAP walk from the head through {', '.join(steps)}: every step determined"
