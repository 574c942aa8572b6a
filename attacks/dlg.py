"""DLG (Zhu et al. 2019): dummy inputs and dummy soft labels optimized jointly so that their
gradient matches the observed one. Also the input optimization that iDLG reuses with fixed labels.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from attacks.matching import (final_loss, matching_loss, optimize, rebuild_victim, soft_cross_entropy,
                              stop_threshold)
from attacks.settings import AttackSettings
from attacks.spiking import as_model_input, dummy_shape, finalize, init_dummy, project_
from attacks.types import Observation, Reconstruction


def optimize_inputs(observation: Observation, settings: AttackSettings, *, seed: int,
                    deadline: float | None = None, labels: torch.Tensor | None = None,
                    attack: str = "dlg") -> Reconstruction:
    """One restart of input optimization.

    Args:
        observation: what the attacker saw.
        settings: attack settings.
        seed: seeds the dummy (and DLG's dummy label) initialisation.
        deadline: `time.monotonic()` after which to stop (TIMEOUT, best-so-far returned).
        labels: fixed hard labels [B] (iDLG); None optimizes soft labels jointly (DLG).
        attack: the name recorded in the reconstruction.

    Returns:
        The best iterate (binarized if thresholding is on) with its matching loss.
    """
    started = time.monotonic()
    victim = rebuild_victim(observation)
    spec = observation.model_spec
    generator = torch.Generator().manual_seed(seed)
    dummy = init_dummy(dummy_shape(spec, observation.batch_size, settings), settings, generator)
    variables = [dummy]
    if labels is None:
        label_logits = torch.randn((observation.batch_size, spec.num_classes),
                                   generator=generator).requires_grad_(True)
        variables.append(label_logits)

        def loss_of_logits(logits: torch.Tensor) -> torch.Tensor:
            return soft_cross_entropy(logits, F.softmax(label_logits, dim=-1))

        def current_labels() -> torch.Tensor:
            return label_logits.detach().clone()
    else:
        fixed = labels.detach().long()

        def loss_of_logits(logits: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits, fixed)

        def current_labels() -> torch.Tensor:
            return fixed

    def objective() -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        loss = matching_loss(victim, as_model_input(dummy, settings), loss_of_logits, settings,
                             image_for_prior=dummy)
        return loss, (dummy.detach().clone(), current_labels())

    outcome = optimize(variables, objective, settings, project=lambda: project_(dummy, settings),
                       deadline=deadline,
                       stop_below=stop_threshold(observation, settings))
    best_inputs, best_labels = outcome.best
    project_(best_inputs, settings)
    inputs = finalize(best_inputs, settings)
    if labels is None:
        hard = best_labels.argmax(-1)

        def final_loss_of_logits(logits: torch.Tensor) -> torch.Tensor:
            return soft_cross_entropy(logits, F.softmax(best_labels, dim=-1))
    else:
        hard, final_loss_of_logits = best_labels, loss_of_logits
    return Reconstruction(
        target_id=observation.target_id, attack=attack, inputs=inputs, labels=hard,
        matching_loss=final_loss(victim, inputs, final_loss_of_logits, settings),
        loss_history=outcome.history, status=outcome.status, message=outcome.message,
        seconds=time.monotonic() - started)


def dlg(observation: Observation, settings: AttackSettings, *, seed: int,
        deadline: float | None = None) -> Reconstruction:
    """DLG: inputs and soft labels optimized jointly (one restart)."""
    return optimize_inputs(observation, settings, seed=seed, deadline=deadline, attack="dlg")
