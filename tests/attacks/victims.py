"""Victims for the attack tests (`fedsnn.audit.cases`): a fresh model, a real sample, its gradient
made the way a client makes it. Ground truth stays in the test; attacks only get the observation."""

from __future__ import annotations

import torch

from attacks import Observation
from fedsnn.audit.cases import victim_case
from fedsnn.core.models import ModelSpec

Victim = tuple[Observation, torch.Tensor, torch.Tensor]


def observe(model_name: str, x: torch.Tensor, y: torch.Tensor, *, seed: int = 0,
            dlg_init: bool = True, **spec: object) -> Observation:
    """A fresh model of `model_name` and the client's mean cross-entropy gradient on (x, y)."""
    model_spec = ModelSpec(model_name, **spec)  # type: ignore[arg-type]
    return victim_case(model_spec, x, y, target_id=f"{model_name}/{seed}", seed=seed,
                       dlg_init=dlg_init).observation
