"""Smooth-surrogate annealing: gradient matching on a smoothed copy of a spiking victim.

The real victim fires hard spikes, so the matching loss of the plain attacks is piecewise constant
in the dummy: L-BFGS stalls (PLATFORM.md) and only Adam's noisy steps move. Here the attacker's copy
of the victim fires soft spikes, s = sigmoid(k (v - theta)), so the loss is a smooth function of
the dummy and L-BFGS line searches have something to search. The derivative of a spike stays the
victim's surrogate (the derivative of its primitive function), so the copy's parameter gradients
are built by the victim's own backward rule and tend to the victim's as k grows. k is annealed
geometrically from `smooth_k_start` to `smooth_k_end` over `smooth_stages` stages, each stage
warm-starting from the best point of the one before.

The observed gradients are the real victim's. The attack returns the last stage's result
(`smooth_keep="last"`), or the stage whose result matches best on the real (hard) victim
(`"real-loss"`); both are the attacker's own choices. Its `matching_loss` is always the one on the
real victim. Measured on MNIST (docs/results.md): annealing all the way to k = 64 lowers that real
matching loss yet halves the judge's recognition rate, so the defaults stop at a soft k = 2.

Note: in the dummy's gradient the spike's value path also takes the surrogate's derivative (autograd
has one derivative per operation), not k * sigmoid'(k u): a surrogate of the smooth loss's
gradient, as the surrogate of the hard one is for the plain attacks.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from attacks.idlg import infer_labels
from attacks.matching import Victim, final_loss, matching_loss, optimize, rebuild_victim
from attacks.parametrize import parametrization
from attacks.settings import AttackSettings
from attacks.spiking import INITIALISERS, project_
from attacks.types import Observation, Reconstruction, Status


class SmoothSpike(nn.Module):
    """A spike with the value sigmoid(k u) and the gradient of the victim's surrogate.

    Args:
        surrogate: the victim neuron's spikingjelly surrogate (its `primitive_function` and `alpha`).
        sharpness: k; the value tends to the hard threshold as k grows.
    """

    def __init__(self, surrogate: nn.Module, sharpness: float) -> None:
        super().__init__()
        self.surrogate = surrogate
        self.sharpness = sharpness

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        primitive = self.surrogate.primitive_function(u, self.surrogate.alpha)
        soft = torch.sigmoid(self.sharpness * u)
        return soft.detach() + (primitive - primitive.detach())


def smooth_copy(victim: Victim, sharpness: float) -> list[SmoothSpike]:
    """Replace every spiking neuron's spike function in `victim.model` (in place) by a SmoothSpike;
    returns them so their sharpness can be annealed.

    Raises:
        ValueError: the model has no spiking neuron.
    """
    spikes = []
    for module in victim.model.modules():
        surrogate = getattr(module, "surrogate_function", None)
        if surrogate is not None and hasattr(surrogate, "primitive_function"):
            module.surrogate_function = SmoothSpike(surrogate, sharpness)
            spikes.append(module.surrogate_function)
    if not spikes:
        raise ValueError("the smooth attack needs a spiking model (no neuron with a surrogate found)")
    return spikes


def sharpness_schedule(settings: AttackSettings) -> list[float]:
    """k per stage: geometric from `smooth_k_start` to `smooth_k_end`."""
    stages = settings.smooth_stages
    if stages == 1:
        return [settings.smooth_k_end]
    ratio = (settings.smooth_k_end / settings.smooth_k_start) ** (1.0 / (stages - 1))
    return [settings.smooth_k_start * ratio ** i for i in range(stages)]


def smooth(observation: Observation, settings: AttackSettings, *, seed: int,
           deadline: float | None = None) -> Reconstruction:
    """One restart of the smooth-surrogate annealing attack (labels inferred as in iDLG)."""
    started = time.monotonic()
    spec = observation.model_spec
    real = rebuild_victim(observation)
    copy = rebuild_victim(observation)
    spikes = smooth_copy(copy, settings.smooth_k_start)
    generator = torch.Generator().manual_seed(seed)
    labels = infer_labels(observation)
    dummy_form = parametrization(spec, observation.batch_size, settings, generator)
    dummy = INITIALISERS[settings.init](dummy_form.shape, settings, generator)
    project_(dummy, settings)
    dummy.requires_grad_(True)

    def loss_of_logits(logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    def objective() -> tuple[torch.Tensor, torch.Tensor]:
        loss = matching_loss(copy, dummy_form.to_model_input(dummy), loss_of_logits, settings,
                             image_for_prior=dummy)
        return loss, dummy.detach().clone()

    schedule = sharpness_schedule(settings)
    stage_settings = settings.with_(iterations=max(1, settings.iterations // len(schedule)))
    start = dummy.detach().clone()
    kept = (final_loss(real, dummy_form.to_model_input(start), loss_of_logits, settings), start)
    history: list[float] = []
    status, message = Status.OK, "no stage ran; the starting point"
    for stage, sharpness in enumerate(schedule):
        if deadline is not None and time.monotonic() > deadline:
            status, message = Status.TIMEOUT, f"time budget ran out before stage {stage + 1}; {message}"
            break
        for spike in spikes:
            spike.sharpness = sharpness
        outcome = optimize([dummy], objective, stage_settings,
                           project=lambda: project_(dummy, settings), deadline=deadline)
        history += outcome.history
        candidate = outcome.best.clone()
        project_(candidate, settings)
        with torch.no_grad():
            dummy.copy_(candidate)
        real_loss = final_loss(real, dummy_form.to_model_input(candidate), loss_of_logits, settings)
        if settings.smooth_keep == "last" or real_loss < kept[0]:
            kept = (real_loss, candidate)
            message = f"stage {stage + 1}/{len(schedule)} (k={sharpness:.3g}) kept ({settings.smooth_keep})"
        if outcome.status == Status.TIMEOUT:
            status, message = Status.TIMEOUT, f"{outcome.message}; {message}"
            break
    if not math.isfinite(kept[0]):
        status = Status.DIVERGED
    return Reconstruction(target_id=observation.target_id, attack="smooth", inputs=kept[1],
                          labels=labels, matching_loss=kept[0], loss_history=history,
                          status=status, message=message, seconds=time.monotonic() - started)
