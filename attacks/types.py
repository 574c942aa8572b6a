"""What an attack receives and returns.

An attack sees an `Observation`: exactly what an honest-but-curious server (or an eavesdropper
on the update channel) has — the global weights it sent, the client's gradient (or an estimate
made from the client's weight update), and the public hyper-parameters. There is no field through
which ground truth (the client's inputs or labels) could reach an attack; the auditor scores
reconstructions separately, from sample ids it resolves itself.

Every attack entry point has the shape
`invert(observations: Sequence[Observation], settings: AttackSettings) -> list[Reconstruction]`,
a batch of independent targets, so it can be vectorized without changing the API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import torch

from fedsnn.core.models import ModelSpec


@dataclass(frozen=True)
class LocalTraining:
    """The client's local training as the server configured it (known to the server only as far
    as its threat model grants; `attacks/threat_model.py`).

    Attributes:
        update_mode: "gradient" (one FedSGD step) or "fedavg" (local epochs).
        optimizer: "sgd" or "adam" (torch defaults otherwise: Adam betas (0.9, 0.999), eps 1e-8).
        learning_rate: the client's learning rate.
        momentum: SGD momentum (0 for none).
        epochs: local epochs E.
        batch_size: local batch size.
        num_examples: samples the client trained on (the reply's `num-examples`).
        shuffle_seed: the seed of the client's batch order, when the server can derive it
            (capability client-randomness); None otherwise.
    """

    update_mode: str
    optimizer: str
    learning_rate: float
    momentum: float
    epochs: int
    batch_size: int
    num_examples: int
    shuffle_seed: int | None = None

    @property
    def steps(self) -> int:
        """Optimizer steps: E * ceil(N / batch size) (1 for FedSGD)."""
        if self.update_mode == "gradient":
            return 1
        return self.epochs * -(-self.num_examples // self.batch_size)


@dataclass(frozen=True)
class Observation:
    """One intercepted client update and the public settings it was produced with.

    Attributes:
        target_id: an opaque name for the target (e.g. "round-3/partition-1"); attacks only
            copy it into their result.
        model_spec: architecture, neuron and encoding settings (public).
        global_state: the state dict the server sent (parameters and buffers).
        gradients: parameter name -> gradient of the client's loss (mean reduction over its
            batch). For weight replies, the estimate (w_sent - w_returned) / (lr * steps).
        batch_size: the client's batch size (public).
        learning_rate: the client's learning rate (public).
        local_steps: optimizer steps behind the update (1 for a true gradient).
        exact_gradient: False when `gradients` is an estimate from several local steps.
        delta: parameter name -> w_sent - w_returned (the update itself), for attacks that replay
            local training; None when the server did not keep it.
        training: the client's local training, as far as the threat model grants it.
        native_size: the side of the client's images before the dataset upsampled them to the
            model's input with `fedsnn.core.image_format.resize` (capability data-format); None when
            the threat model withholds it or the dataset's native size is unknown.
    """

    target_id: str
    model_spec: ModelSpec
    global_state: dict[str, torch.Tensor]
    gradients: dict[str, torch.Tensor]
    batch_size: int = 1
    learning_rate: float = 0.0
    local_steps: int = 1
    exact_gradient: bool = True
    delta: dict[str, torch.Tensor] | None = None
    training: LocalTraining | None = None
    native_size: int | None = None


class Status(str, Enum):
    """How an attack run ended."""

    OK = "ok"
    DIVERGED = "diverged"      # non-finite loss; the best finite iterate is returned
    FAILED = "failed"          # an exception; `inputs` may be the initial dummy
    TIMEOUT = "timeout"        # the time budget ran out; best-so-far is returned


def never_finite(status: Status, message: str) -> tuple[Status, str]:
    """How a run whose loss was never finite ended: it returns its starting point, as a timeout
    if the budget stopped it, else as diverged."""
    return (Status.TIMEOUT if status == Status.TIMEOUT else Status.DIVERGED,
            message or "the loss was never finite; returned the starting point")


@dataclass
class Reconstruction:
    """An attack's output for one observation.

    Attributes:
        inputs: [B, C, H, W] for ANN / shared-over-time dummies, or [T, B, C, H, W] for spiking
            dummies optimized per time step.
        labels: inferred labels [B] (argmax of soft labels for DLG).
        matching_loss: the final gradient-matching loss (the attacker's own quality criterion).
        loss_history: matching loss per iteration (or per logged step).
        winner: in the strongest mode, the attack whose reconstruction was kept ("" otherwise).
    """

    target_id: str
    attack: str
    inputs: torch.Tensor
    labels: torch.Tensor
    matching_loss: float
    loss_history: list[float] = field(default_factory=list)
    status: Status = Status.OK
    message: str = ""
    seconds: float = 0.0
    restart: int = 0
    winner: str = ""


Recovery = tuple[torch.Tensor, str]  # what a closed-form attack recovered: inputs, and a note on it


class NotDeterminedError(ValueError):
    """The observed gradients do not determine the input (the message says why)."""
