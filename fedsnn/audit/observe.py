"""Turn what the server received into an attack `Observation`.

A client replies with weights. For a FedSGD reply (one plain SGD step on one batch) the gradient
is exactly g = (w_sent - w_returned) / lr. For a FedAvg reply (several local steps, possibly with
Adam) (w_sent - w_returned) / (lr * steps) is only an approximation of the average gradient, and
the observation says so (`exact_gradient=False`). The observation also keeps the update itself
and, as far as the threat model grants it, the client's local training, which the unrolled
attack replays (`attacks/unrolled.py`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from attacks import LocalTraining, Observation, ThreatModel
from attacks.threat_model import BATCH_SIZE, LOCAL_EPOCHS, OPTIMIZER, UPDATE_MODE
from fedsnn.core.config import RunConfig
from fedsnn.core.models import ModelSpec, build_model
from fedsnn.core.sampling import round_seed


def parameter_names(spec: ModelSpec) -> list[str]:
    """Names of the trainable parameters of the model described by `spec`."""
    return [name for name, _ in build_model(spec).named_parameters()]


def gradient_from_update(sent: Mapping[str, torch.Tensor], returned: Mapping[str, torch.Tensor],
                         names: list[str], *, lr: float, steps: int) -> dict[str, torch.Tensor]:
    """(w_sent - w_returned) / (lr * steps) per parameter, computed in float64.

    `sent` is first rounded to float32, the precision the client trained in, so a FedSGD step
    replied in float64 gives back the client's gradient to float64 precision.

    Raises:
        KeyError / ValueError: a parameter is missing or has another shape.
    """
    if lr <= 0 or steps <= 0:
        raise ValueError(f"need lr > 0 and steps > 0 to estimate a gradient, got {lr}, {steps}")
    gradients = {}
    for name in names:
        before, after = sent[name].float().double(), returned[name].double()
        if before.shape != after.shape:
            raise ValueError(f"{name}: sent {tuple(before.shape)}, got back {tuple(after.shape)}")
        gradients[name] = ((before - after) / (lr * steps)).float()
    return gradients


def local_training(config: RunConfig, threat_model: ThreatModel, *, server_round: int,
                   partition_id: int, num_examples: int) -> LocalTraining | None:
    """The client's local training as this server knows it: None when the threat model
    withholds any of update mode, optimizer, epochs or batch size; the shuffle seed only when it
    grants the client's randomness (derived from the run seed, round and partition id)."""
    granted = threat_model.granted()
    if not {UPDATE_MODE, OPTIMIZER, LOCAL_EPOCHS, BATCH_SIZE} <= granted:
        return None
    # with client-randomness = "secret" the nodes' draws are not derivable, whatever is granted
    derivable = threat_model.client_randomness and config.client_randomness == "derived"
    seed = round_seed(config.seed, server_round, partition_id) if derivable else None
    return LocalTraining(config.update_mode, config.optimizer, config.learning_rate,
                         config.momentum, config.local_epochs, config.batch_size, num_examples,
                         shuffle_seed=seed)


def known_format(threat_model: ThreatModel, native_size: int | None) -> int | None:
    """The dataset's native image side as this server knows it: None when the threat model
    withholds the data format (or the dataset spec does not say)."""
    return native_size if threat_model.data_format else None


def misfit(training: LocalTraining | None, num_examples: int, local_steps: int) -> str | None:
    """Why a reply's `num-examples` / `local-steps` do not fit the train config the server sent
    (one line), or None when they do (or the server does not know the config)."""
    if num_examples < 1:
        return f"num-examples {num_examples} < 1"
    if training is None:
        return None
    if training.update_mode == "gradient":
        if num_examples > training.batch_size or local_steps != 1:
            return (f"a FedSGD reply should hold one step on <= batch-size {training.batch_size} "
                    f"samples, got {local_steps} steps on {num_examples}")
        return None
    if local_steps != training.steps:
        return (f"local-steps {local_steps} do not fit local-epochs {training.epochs} x "
                f"ceil({num_examples} / batch-size {training.batch_size}) = {training.steps}")
    return None


def observe_update(target_id: str, spec: ModelSpec, sent: Mapping[str, torch.Tensor],
                   returned: Mapping[str, torch.Tensor], *, lr: float, steps: int,
                   batch_size: int, training: LocalTraining | None = None,
                   native_size: int | None = None) -> Observation:
    """The attacker's view of one client's reply (no ground truth in it). `native_size`: the
    dataset's native image side, when the threat model grants the data format (`known_format`).

    Raises:
        KeyError / ValueError: a parameter is missing or has another shape.
    """
    names = parameter_names(spec)
    gradients = gradient_from_update(sent, returned, names, lr=lr, steps=steps)  # checks shapes
    delta = {name: (sent[name].float().double() - returned[name].double()).float()
             for name in names}
    return Observation(
        target_id=target_id, model_spec=spec,
        global_state={k: v.detach().float().clone() for k, v in sent.items()},
        gradients=gradients,
        batch_size=batch_size, learning_rate=lr, local_steps=steps,
        exact_gradient=steps == 1, delta=delta, training=training, native_size=native_size)
