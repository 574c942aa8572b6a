"""Client-side privacy: the steps a node's data goes through, in the order it flows.

The server's defense wrappers put their settings into each round's config; the node applies them
(`clients.node.local_train_reply` and `client_app` call these steps top to bottom):

1. encode — spike-level DP privatizes the inputs before training sees them (`private_inputs`);
2. train — plain, or DP-SGD with Opacus (`dp_sgd_settings`; `dp_sgd_history` / `record_dp_sgd`
   keep the accountant's history);
3. privatize the update — local DP (clip, add Gaussian noise, ε from dp-accounting), then
   central DP's client side (clip to the sent `clipping_norm`, the norm bit for adaptive
   clipping), so that the bit is post-processing of the privatized update (`release`);
4. reply — under a client-side defense only the allow-listed metrics leave the node
   (`fedsnn.core.protocol.released_metrics`), in train and evaluate replies alike.

Flower's `fixedclipping_mod` / `LocalDpMod` are not used: they crash on a zero update and on
integer arrays, and `LocalDpMod` sizes its noise with the classic σ = Δ√(2 ln(1.25/δ))/ε, valid
only for ε ≤ 1; here ε comes from dp-accounting for the noise actually added.

Each node keeps its privacy state across rounds in `Context.state` (Flower re-creates the client
every round): local-DP and spike-DP release counts, and Opacus' accountant history. With node
config `privacy-ledger` (a JSON file on the node) that state also survives a restart of the node
or of the run (`restore_node_ledger` / `save_node_ledger`): the ledger belongs to the node's
data, not to a run, and the server cannot reset it. DP noise, and DP-SGD's Poisson batch, are
drawn from `secrets`, never from a seed the server knows.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM, KEY_NORM_BIT
from torch import nn

from fedsnn.core.models import ModelSpec
from fedsnn.core.models.encoders import FramesEncoder
from fedsnn.core.privacy.accounting import gaussian_epsilon
from fedsnn.core.privacy.clipping import add_gaussian_noise, clip_update
from fedsnn.core.privacy.dpsgd import DpSgdOutcome, DpSgdSettings, History, secret_generator
from fedsnn.core.protocol import ADAPTIVE_FLAG, CENTRAL_DP_FLAG, EQUAL_WEIGHT_KEY, released_metrics
from fedsnn.core.privacy.spikes import (SpikeAccountant, build_mechanism, debiased_rate,
                                   poisson_spikes)

STATE_KEY = "fedsnn-privacy"   # the ConfigRecord in Context.state holding this node's privacy state
LEDGER_KEY = "privacy-ledger"  # node config: the JSON file the node's privacy state persists in
_RESTORED = "ledger-restored"  # in the privacy state: the ledger file was read in this Context
Config = Mapping[str, Any]     # a round's config (a ConfigRecord, or a dict in tests)


def node_state(context_state: RecordDict) -> ConfigRecord:
    """This node's privacy state inside its `Context.state` (created on first use)."""
    if STATE_KEY not in context_state:
        context_state[STATE_KEY] = ConfigRecord()
    return context_state[STATE_KEY]  # type: ignore[return-value]


def restore_node_ledger(state: RecordDict, path: str | None) -> None:
    """Load the node's privacy state from its `privacy-ledger` file `path` into its
    `Context.state`, once per Context (entries already there, e.g. a fresh node secret, stay).

    Raises:
        ValueError: the file exists but cannot be read (a ledger must not reset silently).
    """
    if not path or node_state(state).get(_RESTORED):
        return
    privacy = node_state(state)
    privacy[_RESTORED] = 1
    if not Path(path).is_file():  # the node's first round: nothing spent yet
        return
    try:
        saved = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"privacy-ledger {path}: cannot read it ({error}); fix or remove it "
                         "knowingly (removing it restarts this node's ε at zero)") from None
    for key, value in saved.items():
        if key not in privacy:
            privacy[key] = value


def save_node_ledger(state: RecordDict, path: str | None) -> None:
    """Write the node's privacy state to its `privacy-ledger` file `path` (atomically)."""
    if not path or STATE_KEY not in state:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps({k: v for k, v in node_state(state).items() if k != _RESTORED}))
    os.replace(tmp, target)


def node_secret(context_state: RecordDict) -> int:
    """This node's secret seed (`client-randomness = "secret"`): drawn from `secrets` on first
    use and kept in its `Context.state`, so its draws differ from anything the server can derive
    yet stay consistent over the rounds."""
    state = node_state(context_state)
    if "node-secret" not in state:
        state["node-secret"] = secrets.randbits(62)
    return int(state["node-secret"])  # type: ignore[arg-type]


def _secret_numpy() -> np.random.Generator:
    return np.random.default_rng(secrets.randbits(128))


# -- 1. encode ---------------------------------------------------------------------------------

def spike_accountant(config: Config, spec: ModelSpec) -> tuple[SpikeAccountant, int] | None:
    """Spike-level DP's ledger and time steps T for this round (None: not configured). A spiking
    model privatizes its own T steps; an ANN the configured `spike-dp-time-steps`."""
    if "spike-dp-mechanism" not in config:
        return None
    steps = spec.time_steps if spec.is_spiking else int(config["spike-dp-time-steps"])
    mechanism = build_mechanism(str(config["spike-dp-mechanism"]),
                                epsilon_bit=float(config["spike-dp-epsilon-bit"]),
                                keep_probability=float(config["spike-dp-keep-probability"]))
    bits = steps * spec.in_channels * spec.image_size * spec.image_size
    return SpikeAccountant(mechanism, bits_per_sample=bits, delta=float(config["dp-delta"]),
                           budget=float(config["spike-dp-budget"]),
                           accountant=str(config["dp-accountant"])), steps


def private_inputs(model: nn.Module, x: torch.Tensor, config: Config, spec: ModelSpec,
                   state: ConfigRecord) -> tuple[torch.Tensor, dict[str, float]]:
    """The inputs training may see, and the privacy figures of producing them.

    Without spike-level DP: `x` itself. With it: x rate-coded as spikes and privatized once (a
    spiking model then reads them as frames; an ANN gets their debiased rate image).

    Raises:
        SpikeBudgetExhausted: the release would exceed the budget; nothing is released.
    """
    ledger = spike_accountant(config, spec)
    if ledger is None:
        return x, {}
    accountant, steps = ledger
    releases = int(state.get("spike-dp-releases", 0)) + 1
    epsilon = accountant.check(releases)
    state["spike-dp-releases"] = releases
    generator = secret_generator()
    spikes = accountant.mechanism(poisson_spikes(x, time_steps=steps, generator=generator),
                                  generator=generator)
    figures = {"spike-dp-bit-epsilon": accountant.epsilon_bit, "spike-dp-sample-epsilon": epsilon}
    if getattr(model, "is_spiking", False):
        model.encoder = FramesEncoder(steps)  # type: ignore[assignment]
        return spikes, figures
    return debiased_rate(spikes, flip_probability=accountant.mechanism.flip_probability), figures


# -- 2. train (DP-SGD's settings and ledger; the training itself is in fedsnn.core.privacy.dpsgd) ---

def dp_sgd_settings(config: Config, spec: ModelSpec) -> DpSgdSettings | None:
    """DP-SGD's settings for this round (None: plain training). A spiking model has [T, B, ...]
    inside: Opacus then needs batch_first=False."""
    if "dp-sgd-max-grad-norm" not in config:
        return None
    return DpSgdSettings(
        max_grad_norm=float(config["dp-sgd-max-grad-norm"]), delta=float(config["dp-delta"]),
        noise_multiplier=float(config["dp-sgd-noise-multiplier"]),
        target_epsilon=float(config["dp-sgd-target-epsilon"]),
        total_epochs=int(config["dp-sgd-total-epochs"]),
        accountant=str(config["dp-accountant"]), batch_first=not spec.is_spiking)


def dp_sgd_history(state: ConfigRecord) -> History:
    """Opacus' accountant history of this node's earlier rounds."""
    return list(zip(state.get("dp-sgd-noise", []), state.get("dp-sgd-rate", []),
                    state.get("dp-sgd-steps", []), strict=True))


def record_dp_sgd(state: ConfigRecord, outcome: DpSgdOutcome) -> dict[str, float]:
    """Keep the accountant's new history; the per-sample ε figure for the reply."""
    state["dp-sgd-noise"] = [float(h[0]) for h in outcome.history]
    state["dp-sgd-rate"] = [float(h[1]) for h in outcome.history]
    state["dp-sgd-steps"] = [int(h[2]) for h in outcome.history]
    return {"dp-sgd-sample-epsilon": outcome.epsilon,
            "dp-sgd-noise-multiplier": outcome.noise_multiplier}  # σ: public, not data


# -- 3. privatize the update, 4. reply ---------------------------------------------------------

def release(update: ArrayRecord, metrics: Mapping[str, Any], *, sent: ArrayRecord, config: Config,
            state: ConfigRecord) -> tuple[ArrayRecord, MetricRecord]:
    """What leaves the node after training: the update privatized as the round's config asks
    (local DP, then central DP's client-side clipping) and the metrics it may send.

    Args:
        update: the arrays training produced (any node: honest or Byzantine).
        metrics: training's metrics.
        sent: the global arrays the server sent (the update is measured from them).
        config: the round's train config.
        state: this node's privacy state (`node_state`).
    """
    metrics = dict(metrics)
    if CENTRAL_DP_FLAG in config or "local-dp-noise-multiplier" in config:
        keys = list(sent.keys())
        arrays = [update[key].numpy() for key in keys]
        reference = [sent[key].numpy() for key in keys]
        if "local-dp-noise-multiplier" in config:  # first: what follows is post-processing
            arrays = _local_dp(arrays, reference, config, metrics, state)
        if config.get(CENTRAL_DP_FLAG):
            metrics[EQUAL_WEIGHT_KEY] = 1.0
            if KEY_CLIPPING_NORM in config:
                clipped = clip_update(arrays, reference,
                                      clipping_norm=float(config[KEY_CLIPPING_NORM]))
                arrays = clipped.arrays
                if config.get(ADAPTIVE_FLAG):
                    metrics[KEY_NORM_BIT] = int(clipped.clipped)
        update = ArrayRecord({k: Array(np.asarray(v)) for k, v in zip(keys, arrays)})
    return update, MetricRecord(released_metrics(metrics, config))


def released_evaluation(metrics: Mapping[str, Any], config: Config) -> MetricRecord:
    """An evaluate reply's metrics as they may leave the node. Under central DP they are no DP
    release and FedAvg averages them by the usual example counts."""
    metrics = dict(metrics)
    if config.get(CENTRAL_DP_FLAG):
        metrics[EQUAL_WEIGHT_KEY] = float(metrics.get("num-examples", 1))
    return MetricRecord(released_metrics(metrics, config))


def clipped_noisy(arrays: list[np.ndarray], reference: list[np.ndarray], *, clipping_norm: float,
                  noise_multiplier: float) -> list[np.ndarray]:
    """Local DP's Gaussian mechanism on an update: clip it to C around `reference` and add
    N(0, (zC)²) drawn from a secret generator (also the firewall's `harden` step)."""
    clipped = clip_update(arrays, reference, clipping_norm=clipping_norm).arrays
    return add_gaussian_noise(clipped, std=noise_multiplier * clipping_norm,
                              generator=_secret_numpy())


def _local_dp(arrays: list[np.ndarray], reference: list[np.ndarray], config: Config,
              metrics: dict[str, Any], state: ConfigRecord) -> list[np.ndarray]:
    """Clip to C, add N(0, (zC)²); report ε of this release and of all this node's releases
    (client-level: two datasets of the client give updates ≤ 2C apart → multiplier z/2)."""
    norm = float(config["local-dp-clipping-norm"])
    z = float(config["local-dp-noise-multiplier"])
    delta, accountant = float(config["dp-delta"]), str(config["dp-accountant"])
    noisy = clipped_noisy(arrays, reference, clipping_norm=norm, noise_multiplier=z)
    releases = int(state.get("local-dp-releases", 0)) + 1
    state["local-dp-releases"] = releases
    metrics["local-dp-client-epsilon-release"] = gaussian_epsilon(
        noise_multiplier=z / 2, releases=1, delta=delta, accountant=accountant)
    metrics["local-dp-client-epsilon"] = gaussian_epsilon(
        noise_multiplier=z / 2, releases=releases, delta=delta, accountant=accountant)
    return noisy
