"""Gradient matching: the victim rebuilt from an observation, gradient distances, the TV prior,
and the optimization loop every attack shares (best-so-far, non-finite and time-budget handling).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from attacks.progress import report
from attacks.settings import AttackSettings
from attacks.spiking import model_logits
from attacks.types import Observation, Status, never_finite
from fedsnn.core.models import build_model

S = TypeVar("S")

# L-BFGS "stall" rule: stop when the loss has not changed at all for this many steps (it happens on
# IF networks, where the matching loss is piecewise constant in the input; PLATFORM.md).
STALL_STEPS = 3


@dataclass
class Victim:
    """The attacked model as the attacker rebuilds it, with the observed gradients in the order of
    its parameters."""

    model: nn.Module
    parameters: list[torch.Tensor]
    observed: list[torch.Tensor]
    batch_size: int


def rebuild_victim(observation: Observation) -> Victim:
    """The model of `observation.model_spec` with the weights the server sent.

    Raises:
        ValueError: the observation has no gradient for any parameter of the model, or a gradient
            of the wrong shape.
    """
    model = build_model(observation.model_spec)
    model.load_state_dict(observation.global_state)
    model.train()
    parameters, observed = [], []
    for name, parameter in model.named_parameters():
        if name not in observation.gradients:
            parameter.requires_grad_(False)
            continue
        gradient = observation.gradients[name].detach().to(parameter.dtype)
        if gradient.shape != parameter.shape:
            raise ValueError(f"observation {observation.target_id!r}: gradient {name!r} has shape "
                             f"{tuple(gradient.shape)}, the model's parameter {tuple(parameter.shape)}")
        parameters.append(parameter)
        observed.append(gradient)
    if not parameters:
        raise ValueError(f"observation {observation.target_id!r}: none of its gradients "
                         f"{sorted(observation.gradients)[:4]}… names a parameter of "
                         f"{observation.model_spec.name!r}")
    return Victim(model, parameters, observed, observation.batch_size)


def loss_scale(gradients: Mapping[str, torch.Tensor] | Sequence[torch.Tensor], distance: str) -> float:
    """What a matching loss is measured against: for "l2", the squared norm of the observed gradient
    (the loss of a dummy whose gradient is zero); 1 for "cosine" (already scale-free)."""
    if distance != "l2":
        return 1.0
    values = gradients.values() if isinstance(gradients, Mapping) else gradients
    scale = sum(float((g.detach().double() ** 2).sum()) for g in values)
    return scale if scale > 0 else 1.0


def stop_threshold(observation: Observation, settings: AttackSettings) -> float | None:
    """`settings.stop_loss` as an absolute matching loss for this observation (None: no stop)."""
    if settings.stop_loss is None:
        return None
    return settings.stop_loss * loss_scale(observation.gradients, settings.distance)


def soft_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_c t_c log softmax(logits)_c, where t are probabilities (the
    client's mean reduction; DLG's soft labels)."""
    return torch.mean(torch.sum(-soft_targets * F.log_softmax(logits, dim=-1), dim=-1))


def l2_distance(dummy: Sequence[torch.Tensor], observed: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over layers of the squared L2 distance (DLG's objective, no 0.5 factor)."""
    return sum(((d - o) ** 2).sum() for d, o in zip(dummy, observed, strict=True))  # type: ignore[return-value]


def cosine_distance(dummy: Sequence[torch.Tensor], observed: Sequence[torch.Tensor]) -> torch.Tensor:
    """1 - cosine similarity of all layers' gradients taken as one vector."""
    dot = sum((d * o).sum() for d, o in zip(dummy, observed, strict=True))
    dummy_norm = torch.sqrt(sum((d ** 2).sum() for d in dummy))  # type: ignore[arg-type]
    observed_norm = torch.sqrt(sum((o ** 2).sum() for o in observed))  # type: ignore[arg-type]
    return 1.0 - dot / (dummy_norm * observed_norm + 1e-12)


DISTANCES: dict[str, Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor]], torch.Tensor]] = {
    "l2": l2_distance,
    "cosine": cosine_distance,
}


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """GRNN's TV prior on a [B, C, H, W] or [T, B, C, H, W] tensor: per image, 2 * (mean squared
    vertical + mean squared horizontal neighbour difference), summed over images, divided by B."""
    images = x.reshape(-1, *x.shape[-3:])
    dh = (images[:, :, 1:, :] - images[:, :, :-1, :]).pow(2).sum() / images[0, :, 1:, :].numel()
    dw = (images[:, :, :, 1:] - images[:, :, :, :-1]).pow(2).sum() / images[0, :, :, 1:].numel()
    return 2.0 * (dh + dw) / x.shape[-4]


def matching_loss(victim: Victim, inputs: torch.Tensor, loss_of_logits: Callable[[torch.Tensor], torch.Tensor],
                  settings: AttackSettings, image_for_prior: torch.Tensor | None = None) -> torch.Tensor:
    """Gradient distance between the victim's gradient on `inputs` and the observed one, plus the
    TV prior on `image_for_prior` (default: `inputs`). Differentiable in `inputs` (and in whatever
    produced `loss_of_logits`'s targets)."""
    loss = loss_of_logits(model_logits(victim.model, inputs))
    dummy_grads = torch.autograd.grad(loss, victim.parameters, create_graph=True)
    objective = DISTANCES[settings.distance](dummy_grads, victim.observed)
    if settings.tv_weight > 0:
        objective = objective + settings.tv_weight * total_variation(
            inputs if image_for_prior is None else image_for_prior)
    return objective


@dataclass
class Outcome(Generic[S]):
    """What the optimization loop returns: the best iterate's snapshot and its loss."""

    best: S
    best_loss: float
    history: list[float] = field(default_factory=list)
    status: Status = Status.OK
    message: str = ""


OPTIMIZER_FACTORIES: dict[str, Callable[[list[torch.Tensor], AttackSettings], torch.optim.Optimizer]] = {
    "lbfgs": lambda v, s: torch.optim.LBFGS(v, lr=s.effective_lr, max_iter=s.lbfgs_max_eval,
                                            line_search_fn="strong_wolfe" if s.line_search else None),
    "adam": lambda v, s: torch.optim.Adam(v, lr=s.effective_lr),
    "rmsprop": lambda v, s: torch.optim.RMSprop(v, lr=s.effective_lr, momentum=0.99),
}


def optimize(variables: list[torch.Tensor], objective: Callable[[], tuple[torch.Tensor, S]],
             settings: AttackSettings, *, project: Callable[[], None] | None = None,
             deadline: float | None = None, stop_below: float | None = None) -> Outcome[S]:
    """Minimize `objective` over `variables`, keeping the best finite iterate.

    Args:
        variables: leaf tensors the optimizer moves (dummy inputs/labels, or generator weights).
        objective: returns (loss, snapshot), where snapshot is a detached copy of what the attack
            would return at the current point; it is kept whenever the loss is the lowest so far.
        settings: iterations, optimizer and learning rate.
        project: applies constraints in place after every step (clamp, non-negativity) of a
            first-order optimizer. L-BFGS is not projected between steps unless
            `settings.lbfgs_projection`: moving its iterate behind its back corrupts its
            curvature memory (on LeNet iDLG it turned converging runs into oscillating ones), so
            its result is projected once, at the end, by the caller.
        deadline: `time.monotonic()` value after which the loop stops with TIMEOUT.
        stop_below: end early once the loss is at or below this (converged).

    Each step is reported to the listener of `attacks.progress.watch`, if any; it may stop the loop.

    Returns:
        The best snapshot and its loss, the loss per step, and a status: DIVERGED when the loss
        became non-finite (the best earlier iterate is kept), TIMEOUT when the deadline passed.
    """
    optimizer = OPTIMIZER_FACTORIES[settings.effective_optimizer](variables, settings)
    best: list[tuple[float, S]] = []
    first: list[S] = []  # the starting point, returned if the loss is never finite

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss, snapshot = objective()
        if not first:
            first.append(snapshot)
        value = float(loss.detach())
        if math.isfinite(value) and (not best or value < best[0][0]):
            best[:] = [(value, snapshot)]
        if loss.requires_grad:
            loss.backward()
        return loss

    history: list[float] = []
    status, message, unchanged = Status.OK, "", 0
    scheduled = settings.lr_schedule != "constant" and settings.effective_optimizer != "lbfgs"
    for step in range(settings.iterations):
        if deadline is not None and time.monotonic() > deadline:
            status, message = Status.TIMEOUT, f"time budget ran out after {step} steps"
            break
        if scheduled:
            for group in optimizer.param_groups:
                group["lr"] = settings.lr_at(step)
        loss = optimizer.step(closure)
        value = float(loss.detach()) if loss is not None else math.nan
        history.append(value)
        if not math.isfinite(value) or not all(torch.isfinite(v).all() for v in variables):
            status, message = Status.DIVERGED, f"non-finite loss at step {step}; kept the best iterate"
            break
        if project is not None and (settings.effective_optimizer != "lbfgs"
                                    or settings.lbfgs_projection):
            project()
        unchanged = unchanged + 1 if len(history) > 1 and history[-1] == history[-2] else 0
        if settings.effective_optimizer == "lbfgs" and unchanged >= STALL_STEPS:
            message = f"L-BFGS stalled (loss unchanged for {STALL_STEPS} steps) at step {step}"
            break
        if value == 0.0 or (stop_below is not None and value <= stop_below):
            message = message or f"converged at step {step}"
            break
        if plateaued(history, settings.plateau_window, settings.plateau_tol):
            message = (f"matching loss plateaued at step {step} (best of the last "
                       f"{settings.plateau_window} steps < {settings.plateau_tol:g} below the "
                       "best before them)")
            break
        if not report(step, value, best[0][1] if best else None):
            message = f"stopped by the caller after step {step}"
            break
    if not first:  # the budget ran out before the first step: report the starting point
        first.append(objective()[1])
    if not best:  # never a finite loss: return the starting point
        return Outcome(first[0], math.inf, history, *never_finite(status, message))
    return Outcome(best[0][1], best[0][0], history, status, message)


def plateaued(history: Sequence[float], window: int, tol: float) -> bool:
    """Whether the best loss of the last `window` steps is less than a fraction `tol` below the
    best loss before them (never with `window` 0 or fewer than 2 windows of history).

    Example:
        >>> plateaued([4.0, 1.0, 0.999, 0.998], window=2, tol=0.01), plateaued([4.0, 2.0, 1.0, 0.5], 2, 0.01)
        (True, False)
    """
    if window < 1 or len(history) < 2 * window:
        return False
    before, recent = min(history[:-window]), min(history[-window:])
    return recent > before * (1 - tol)


def final_loss(victim: Victim, inputs: torch.Tensor,
               loss_of_logits: Callable[[torch.Tensor], torch.Tensor], settings: AttackSettings) -> float:
    """The matching objective of what an attack returns (inf when it is not finite); restarts are
    ranked by it."""
    with torch.enable_grad():
        value = float(matching_loss(victim, inputs, loss_of_logits, settings).detach())
    return value if math.isfinite(value) else math.inf
