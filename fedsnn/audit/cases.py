"""Cases: a victim, what an attacker sees of it, and the ground truth kept apart from that.

A `Case` is one client's batch (x, y) sent through a freshly initialised model, the way a client
makes its gradient (mean cross-entropy, `fedsnn.core.training.batch_gradient`). Its `observation` is
all an attack may receive; `inputs` and `labels` are the ground truth, read only by the scorer.
The benchmarks (image and event), the experiments and the attack tests build their victims here,
so that every path from a victim to a score starts the same way (breaching's `cases`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks import Observation
from fedsnn.core.models import ModelSpec, build_model
from fedsnn.core.training import batch_gradient

MODEL_SEED_STRIDE = 1_000_003  # victim seed of item i: seed * stride + i (twins share weights)


def victim_seed(seed: int, index: int) -> int:
    """The initialisation seed of the `index`-th victim of a run seeded `seed`."""
    return seed * MODEL_SEED_STRIDE + index


@dataclass(frozen=True)
class Case:
    """One attacked batch: the attacker's view and the ground truth (never passed to an attack)."""

    observation: Observation
    inputs: torch.Tensor
    labels: torch.Tensor


def victim_case(spec: ModelSpec, x: torch.Tensor, y: torch.Tensor, *, target_id: str,
                seed: int, dlg_init: bool = True, encoder_seed: int = 0) -> Case:
    """A fresh model of `spec` (initialised with `seed`; DLG's U(-0.5, 0.5) by default) and a
    client's gradient on (x, y) through it.

    Example:
        >>> case = victim_case(ModelSpec("lenet"), torch.rand(1, 1, 28, 28), torch.tensor([3]),
        ...                    target_id="t", seed=0)
        >>> case.observation.batch_size, sorted(case.observation.gradients)[0]
        (1, 'layers.conv1.bias')
    """
    model = build_model(spec, dlg_init=dlg_init, seed=seed, encoder_seed=encoder_seed)
    _, gradients = batch_gradient(model, x, y)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    observation = Observation(target_id=target_id, model_spec=spec, global_state=state,
                              gradients=gradients, batch_size=len(x))
    return Case(observation, x, y)


def sample_cases(spec: ModelSpec, x: torch.Tensor, y: torch.Tensor, *, name: str,
                 seed: int = 0) -> list[Case]:
    """Each sample alone (a batch of one) on its own fresh victim, seeded `victim_seed(seed, i)`
    and named `<name>/<i>` (the speed benchmarks' targets)."""
    return [victim_case(spec, x[i:i + 1], y[i:i + 1], target_id=f"{name}/{i}",
                        seed=victim_seed(seed, i)) for i in range(len(x))]
