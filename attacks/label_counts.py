"""Label-count leakage: the class histogram of a client's local data, read from its update.

With mean cross-entropy, the last layer's bias gradient on a batch of b samples is
g = P - H / b (P: the batch's mean softmax, H: its class histogram). Plain SGD (momentum mu) over
T steps moves the bias by delta_b = lr * sum_t c_t g_t, with c_t = sum_{k <= T-t} mu^k. Taking
each batch's histogram as the client's N-sample histogram scaled (H_t / b_t ~ counts / N):

    counts = N * (sum_t c_t P_t - delta_b / lr) / sum_t c_t,

rounded to integers that sum to N. For one FedSGD step this is the LLG / iLRG estimate
N * (P - g), exact while the softmax hardly depends on the input (an untrained model;
`tests/attacks/test_label_counts.py`). The P_t are estimated on probe inputs (noise images, or
public data) at weights interpolated between the sent and the returned ones, as Dimitrov et al.
(2022) do. (Replaying the client's training on the noise probe instead was worse on LeNet: the
replayed model drifts away from the real one.) Mini-batches whose softmax swings from one batch
to the next (large lr, small batches) break the straight-line assumption: counts are then off
by one or two per class.

Adam's update is not linear in the gradients; its bias change mostly keeps their sign. Under Adam
the estimate shares N among the classes whose bias went up (under-represented classes go down),
weighted by how far they moved: a weak estimate, reported as such.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attacks.idlg import last_linear_names
from attacks.types import LocalTraining, Observation
from fedsnn.core.metrics import round_to_total
from fedsnn.core.models import build_model

MAX_POINTS = 16  # weights along the trajectory at which the softmax is taken


def probe_inputs(observation: Observation, count: int, seed: int = 0) -> torch.Tensor:
    """Inputs the attacker can make without data: uniform noise images [count, C, H, W]."""
    spec = observation.model_spec
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((count, spec.in_channels, spec.image_size, spec.image_size), generator=generator)


def observed_delta(observation: Observation) -> dict[str, torch.Tensor]:
    """w_sent - w_returned: the observation's delta, or lr * steps * its gradient estimate."""
    if observation.delta is not None:
        return observation.delta
    scale = observation.learning_rate * observation.local_steps
    return {name: g * scale for name, g in observation.gradients.items()}


def observed_training(observation: Observation) -> LocalTraining:
    """The observation's local training, or one FedSGD step on its batch."""
    if observation.training is not None:
        return observation.training
    return LocalTraining("gradient", "sgd", observation.learning_rate, 0.0, 1,
                         observation.batch_size, observation.batch_size)


def step_weights(training: LocalTraining) -> torch.Tensor:
    """c_t per step: how much of step t's gradient the update holds (momentum compounds it)."""
    steps = training.steps
    mu = training.momentum if training.update_mode == "fedavg" else 0.0
    return torch.tensor([sum(mu ** k for k in range(steps - t)) for t in range(steps)],
                        dtype=torch.float64)


def trajectory_softmax(observation: Observation, delta: dict[str, torch.Tensor],
                       training: LocalTraining, probe: torch.Tensor) -> torch.Tensor:
    """sum_t c_t P_t / sum_t c_t, each step's weights taken on the straight line from the sent
    weights (t = 0) to the returned ones (t = T), P_t the probe's mean softmax there."""
    model = build_model(observation.model_spec).train()
    sent = {k: v.float() for k, v in observation.global_state.items()}
    weights = step_weights(training)
    steps = len(weights)
    total = torch.zeros(observation.model_spec.num_classes, dtype=torch.float64)
    for step in torch.linspace(0, steps - 1, min(steps, MAX_POINTS)).round().long().tolist():
        fraction = step / steps
        model.load_state_dict({k: sent[k] - fraction * delta[k].float() if k in delta else sent[k]
                               for k in sent})
        with torch.no_grad():
            total += weights[step] * F.softmax(model(probe), dim=-1).mean(0).double()
    used = weights[torch.linspace(0, steps - 1, min(steps, MAX_POINTS)).round().long()]
    return total / used.sum()


def infer_label_counts(observation: Observation, *, probe: torch.Tensor | None = None,
                       seed: int = 0) -> torch.Tensor:
    """The client's class histogram [num_classes] (integers summing to num-examples).

    Args:
        observation: the update, the sent weights and the local training it came from.
        probe: inputs to estimate the model's softmax on (default: noise images; public
            same-domain data where the threat model grants it).
        seed: seeds the default probe and the labels' order in the replay.

    Raises:
        ValueError: the model has no linear head with a bias, or the update lacks it.
    """
    training = observed_training(observation)
    _, bias_name = last_linear_names(build_model(observation.model_spec))
    delta = observed_delta(observation)
    if bias_name is None or bias_name not in delta:
        raise ValueError(f"label counts need the update of the last layer's bias ({bias_name!r})")
    total = training.num_examples
    bias_change = delta[bias_name].double()
    if training.update_mode == "fedavg" and training.optimizer == "adam":
        return round_to_total((-bias_change).clamp(min=0), total)
    probe = probe_inputs(observation, min(max(total, 8), 64), seed) if probe is None else probe
    gradient_sum = bias_change / (training.learning_rate * float(step_weights(training).sum()))
    softmax = trajectory_softmax(observation, delta, training, probe)
    return round_to_total(total * (softmax - gradient_sum), total)


def labels_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """One label per sample, class by class: [0, 0, 1, 3, 3, 3, …] for counts [2, 1, 0, 3, …]."""
    return torch.repeat_interleave(torch.arange(len(counts)), counts.long())
