"""Client-side privacy: apply what the server's defense wrappers put in the train config.

- `privacy_mod` (a Flower client mod) works on the reply before it leaves the node:
  central DP's client side (report `dp-weight = 1`; clip to the sent `clipping_norm` and report
  the norm bit for client-side clipping) and local DP (clip, add Gaussian noise, report ε).
  Flower's `fixedclipping_mod` / `LocalDpMod` are not used: they crash on a zero update and on
  integer arrays, and `LocalDpMod` sizes its noise with the classic σ = Δ√(2 ln(1.25/δ))/ε, valid
  only for ε ≤ 1; here ε comes from dp-accounting for the noise actually added.
- `training_privacy` builds the hooks local training runs through (`clients.node`): DP-SGD with
  Opacus, and spike-level DP on the inputs.

Each node keeps its privacy state across rounds in `Context.state` (Flower re-creates the client
every round): local-DP and spike-DP release counts, and Opacus' accountant history. With node
config `privacy-ledger` (a JSON file on the node) that state also survives a restart of the
node or of the run: it is read on the node's first message and written after every training
reply. The ledger belongs to the node's data, not to a run: the server cannot reset it.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM, KEY_NORM_BIT
from torch import nn

from fedsnn.training import TrainResult, batch_gradient, make_optimizer, train_epochs
from fedsnn.models import ModelSpec
from fedsnn.models.encoders import FramesEncoder
from fedsnn.privacy.accounting import gaussian_epsilon
from fedsnn.privacy.clipping import add_gaussian_noise, clip_update
from fedsnn.privacy.dpsgd import DpSgdSettings, private_epochs, private_gradient
from fedsnn.privacy.protocol import ADAPTIVE_FLAG, CENTRAL_DP_FLAG, EQUAL_WEIGHT_KEY
from fedsnn.privacy.spikes import (SpikeAccountant, build_mechanism, debiased_rate,
                                   poisson_spikes)

STATE_KEY = "fedsnn-privacy"   # the ConfigRecord in Context.state holding this node's privacy state
LEDGER_KEY = "privacy-ledger"  # node config: the JSON file the node's privacy state persists in


def _state(context_state: RecordDict) -> ConfigRecord:
    if STATE_KEY not in context_state:
        context_state[STATE_KEY] = ConfigRecord()
    return context_state[STATE_KEY]  # type: ignore[return-value]


def restore_node_ledger(context: Context) -> None:
    """Load the node's privacy state from its `privacy-ledger` file, once per Context."""
    path = context.node_config.get(LEDGER_KEY)
    if not path or STATE_KEY in context.state or not Path(str(path)).is_file():
        return
    try:
        saved = json.loads(Path(str(path)).read_text())
    except (OSError, ValueError) as error:  # a ledger we cannot read must not be reset silently
        raise ValueError(f"privacy-ledger {path}: cannot read it ({error}); fix or remove it "
                         "knowingly (removing it restarts this node's ε at zero)") from None
    context.state[STATE_KEY] = ConfigRecord(saved)


def save_node_ledger(context: Context) -> None:
    """Write the node's privacy state to its `privacy-ledger` file (atomically)."""
    path = context.node_config.get(LEDGER_KEY)
    if not path or STATE_KEY not in context.state:
        return
    target = Path(str(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(dict(_state(context.state))))
    os.replace(tmp, target)


def _secret_numpy() -> np.random.Generator:
    return np.random.default_rng(secrets.randbits(128))


def _secret_torch() -> torch.Generator:
    return torch.Generator().manual_seed(secrets.randbits(63))


# -- reply-level defenses (a client mod) --------------------------------------------------------

def privacy_mod(msg: Message, context: Context, call_next: Callable[[Message, Context], Message]
                ) -> Message:
    """Flower client mod: client-side central-DP clipping and local DP on a training reply.

    Example:
        >>> app = ClientApp(mods=[privacy_mod])  # doctest: +SKIP
    """
    config_records = list(msg.content.config_records.values())
    config = config_records[0] if config_records else ConfigRecord()
    restore_node_ledger(context)
    reply = call_next(msg, context)
    if msg.metadata.message_type == "train":
        save_node_ledger(context)  # what training spent, even if the reply is an error
    if reply.has_error():
        return reply
    if msg.metadata.message_type == "evaluate":
        if config.get(CENTRAL_DP_FLAG):  # evaluation metrics are no DP release: usual weights
            metrics = next(iter(reply.content.metric_records.values()))
            metrics[EQUAL_WEIGHT_KEY] = float(metrics.get("num-examples", 1))
        return reply
    if msg.metadata.message_type != "train" or not (
            CENTRAL_DP_FLAG in config or "local-dp-noise-multiplier" in config):
        return reply
    sent = next(iter(msg.content.array_records.values()))
    (name, record), = reply.content.array_records.items()
    metrics = next(iter(reply.content.metric_records.values()))
    keys = list(sent.keys())
    arrays = [record[key].numpy() for key in keys]
    reference = [sent[key].numpy() for key in keys]
    if config.get(CENTRAL_DP_FLAG):
        metrics[EQUAL_WEIGHT_KEY] = 1.0
        if KEY_CLIPPING_NORM in config:
            clipped = clip_update(arrays, reference, clipping_norm=float(config[KEY_CLIPPING_NORM]))
            arrays = clipped.arrays
            if config.get(ADAPTIVE_FLAG):
                metrics[KEY_NORM_BIT] = int(clipped.clipped)
    if "local-dp-noise-multiplier" in config:
        arrays = _local_dp(arrays, reference, config, metrics, _state(context.state))
        save_node_ledger(context)
    reply.content[name] = ArrayRecord({k: Array(np.asarray(v)) for k, v in zip(keys, arrays)})
    return reply


def _local_dp(arrays: list[np.ndarray], reference: list[np.ndarray], config: ConfigRecord,
              metrics: MetricRecord, state: ConfigRecord) -> list[np.ndarray]:
    """Clip to C, add N(0, (zC)²); report ε of this release and of all this node's releases
    (client-level: two datasets of the client give updates ≤ 2C apart → multiplier z/2)."""
    norm = float(config["local-dp-clipping-norm"])
    z = float(config["local-dp-noise-multiplier"])
    delta, accountant = float(config["dp-delta"]), str(config["dp-accountant"])
    clipped = clip_update(arrays, reference, clipping_norm=norm).arrays
    noisy = add_gaussian_noise(clipped, std=z * norm, generator=_secret_numpy())
    releases = int(state.get("local-dp-releases", 0)) + 1
    state["local-dp-releases"] = releases
    metrics["local-dp-client-epsilon-release"] = gaussian_epsilon(
        noise_multiplier=z / 2, releases=1, delta=delta, accountant=accountant)
    metrics["local-dp-client-epsilon"] = gaussian_epsilon(
        noise_multiplier=z / 2, releases=releases, delta=delta, accountant=accountant)
    return noisy


# -- training-level defenses (hooks for clients.node) ------------------------------------------

class BatchGradient(NamedTuple):
    """One batch's loss and gradient (FedSGD), which samples it used and how many it reports."""

    loss: float
    gradients: dict[str, torch.Tensor]
    indices: torch.Tensor
    num_examples: int


@dataclass
class TrainingHooks:
    """How local training runs: plain by default; DP-SGD and spike-level DP replace pieces.

    `clients.node.local_train_reply` calls `gradient` (FedSGD: it draws the batch and runs
    `inputs` on it) or `inputs` then `train` (local epochs), and adds `metrics()` to its reply.
    """

    state: ConfigRecord = field(default_factory=ConfigRecord)
    dpsgd: DpSgdSettings | None = None
    spike: SpikeAccountant | None = None
    spike_time_steps: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    def inputs(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The inputs training may see: privatized spikes under spike-level DP (a spiking model
        then reads them as frames; an ANN gets their debiased rate image)."""
        if self.spike is None:
            return x
        releases = int(self.state.get("spike-dp-releases", 0)) + 1
        epsilon = self.spike.check(releases)  # raises SpikeBudgetExhausted: nothing is released
        self.state["spike-dp-releases"] = releases
        generator = _secret_torch()
        spikes = self.spike.mechanism(poisson_spikes(x, time_steps=self.spike_time_steps,
                                                     generator=generator), generator=generator)
        self.extra.update({"spike-dp-bit-epsilon": self.spike.epsilon_bit,
                           "spike-dp-sample-epsilon": epsilon})
        if getattr(model, "is_spiking", False):
            model.encoder = FramesEncoder(self.spike_time_steps)  # type: ignore[assignment]
            return spikes
        return debiased_rate(spikes, flip_probability=self.spike.mechanism.flip_probability)

    def gradient(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int,
                 seed: int) -> BatchGradient:
        """Draw one batch from (x, y) and return its loss and gradient. Plain: `batch_size`
        samples drawn with the round's seed. DP-SGD: a Poisson-sampled batch (Opacus, secret
        generator; expected size ≈ batch_size), clipped per sample and noised, whose sample rate
        the accountant counts; `num_examples` is then the expected batch size (the drawn size
        is itself private)."""
        if self.dpsgd is None:
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
            batch = order[:batch_size].sort().values
            loss, gradients = batch_gradient(model, self.inputs(model, x[batch]), y[batch])
            return BatchGradient(loss, gradients, batch, len(batch))
        gradients, outcome, batch = private_gradient(
            model, x, y, settings=self.dpsgd, batch_size=batch_size, history=self._history(),
            inputs=lambda samples: self.inputs(model, samples), generator=_secret_torch())
        self._record(outcome.history, outcome.epsilon)
        return BatchGradient(outcome.loss, gradients, batch.sort().values, outcome.num_examples)

    def train(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int,
              batch_size: int, lr: float, optimizer: str = "adam", momentum: float = 0.0,
              seed: int = 0) -> TrainResult:
        """Local epochs (DP-SGD: Opacus on Poisson-sampled batches)."""
        if self.dpsgd is None:
            return train_epochs(model, x, y, epochs=epochs, batch_size=batch_size, lr=lr,
                                optimizer=optimizer, momentum=momentum, seed=seed)
        opt = make_optimizer(optimizer, model.parameters(), lr=lr, momentum=momentum)
        outcome = private_epochs(model, x, y, optimizer=opt, settings=self.dpsgd, epochs=epochs,
                                 batch_size=batch_size, history=self._history())
        self._record(outcome.history, outcome.epsilon)
        return TrainResult(loss=outcome.loss, num_examples=outcome.num_examples, steps=outcome.steps)

    def metrics(self) -> dict[str, float]:
        """Privacy figures for the reply's metrics."""
        return dict(self.extra)

    def _history(self) -> list[tuple[float, float, int]]:
        return list(zip(self.state.get("dp-sgd-noise", []), self.state.get("dp-sgd-rate", []),
                        self.state.get("dp-sgd-steps", []), strict=True))

    def _record(self, history: list[tuple[float, float, int]], epsilon: float) -> None:
        self.state["dp-sgd-noise"] = [float(h[0]) for h in history]
        self.state["dp-sgd-rate"] = [float(h[1]) for h in history]
        self.state["dp-sgd-steps"] = [int(h[2]) for h in history]
        self.extra["dp-sgd-sample-epsilon"] = epsilon
        self.extra["dp-sgd-noise-multiplier"] = float(history[-1][0])  # σ: public, not data


def training_privacy(config: ConfigRecord | dict[str, Any], context_state: RecordDict,
                     spec: ModelSpec) -> TrainingHooks:
    """The hooks for this round, from the train config the defense wrappers filled.

    Args:
        config: the round's train config.
        context_state: the node's `Context.state` (privacy state persists there).
        spec: the model (a spiking one has [T, B, ...] inside: Opacus needs batch_first=False;
            spike-level DP uses its T and input shape).

    Example:
        >>> hooks = training_privacy(msg.content["config"], context.state, node.spec)  # doctest: +SKIP
    """
    spiking, time_steps = spec.is_spiking, spec.time_steps
    sample_shape = (spec.in_channels, spec.image_size, spec.image_size)
    state = _state(context_state)
    hooks = TrainingHooks(state=state)
    if "dp-sgd-max-grad-norm" in config:
        hooks.dpsgd = DpSgdSettings(
            max_grad_norm=float(config["dp-sgd-max-grad-norm"]), delta=float(config["dp-delta"]),
            noise_multiplier=float(config["dp-sgd-noise-multiplier"]),
            target_epsilon=float(config["dp-sgd-target-epsilon"]),
            total_epochs=int(config["dp-sgd-total-epochs"]),
            accountant=str(config["dp-accountant"]), batch_first=not spiking)
    if "spike-dp-mechanism" in config:
        steps = time_steps if spiking else int(config["spike-dp-time-steps"])
        mechanism = build_mechanism(str(config["spike-dp-mechanism"]),
                                    epsilon_bit=float(config["spike-dp-epsilon-bit"]),
                                    keep_probability=float(config["spike-dp-keep-probability"]))
        bits = steps * int(np.prod(sample_shape))
        hooks.spike = SpikeAccountant(mechanism, bits_per_sample=bits,
                                      delta=float(config["dp-delta"]),
                                      budget=float(config["spike-dp-budget"]),
                                      accountant=str(config["dp-accountant"]))
        hooks.spike_time_steps = steps
    return hooks
