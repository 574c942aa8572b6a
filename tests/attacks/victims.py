"""Victims for the attack tests: a fresh model, a real sample, its gradient made the way a client
makes it. Ground truth stays in the test; attacks only get the observation."""

from __future__ import annotations

import torch

from attacks import Observation
from fedsnn.training import batch_gradient
from fedsnn.models import ModelSpec, build_model

Victim = tuple[Observation, torch.Tensor, torch.Tensor]


def observe(model_name: str, x: torch.Tensor, y: torch.Tensor, *, seed: int = 0,
            dlg_init: bool = True, **spec: object) -> Observation:
    """A fresh model of `model_name` and the client's mean cross-entropy gradient on (x, y)."""
    model_spec = ModelSpec(model_name, **spec)  # type: ignore[arg-type]
    model = build_model(model_spec, dlg_init=dlg_init, seed=seed)
    _, gradients = batch_gradient(model, x, y)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return Observation(target_id=f"{model_name}/{seed}", model_spec=model_spec,
                       global_state=state, gradients=gradients, batch_size=len(x))
