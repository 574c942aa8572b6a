"""Client-side privacy: the node's ledgers and one round's privacy plan.

The server's defense wrappers put their settings into each round's config (declared in
`fedsnn.core.defense_config`). The node enters this module once per round, through `plan_round`,
which reads those settings, checks them against the node's own policy (`clients.policy`) and
returns a `RoundPrivacy`; the pipeline (`clients.reply.train_reply`) then runs its steps in order:

1. encode — spike-level DP privatizes the inputs before training sees them (`encode`);
2. train — plain, or DP-SGD with Opacus (`dp_sgd`: σ, the public rate and steps, the ledger);
3. privatize the update — local DP (clip, add Gaussian noise), then central DP's client side
   (clip to the sent `clipping_norm`, the norm bit for adaptive clipping), so that the bit is
   post-processing of the privatized update (`release`: the one place an update is privatized);
4. reply — under a client-side defense only the allow-listed metrics leave the node
   (`fedsnn.core.protocol.released_metrics`), and the counts it carries (`num-examples`,
   `local-steps`) are public figures from the node's n̂, never measured on its data (issue 27).

Flower's `fixedclipping_mod` / `LocalDpMod` are not used: they crash on a zero update and on
integer arrays, and `LocalDpMod` sizes its noise with the classic σ = Δ√(2 ln(1.25/δ))/ε, valid
only for ε ≤ 1; here ε comes from dp-accounting for the noise actually added.

The node's ledgers (`clients.ledgers.NodeLedgers`) are opened and saved by the ClientApp, once
per message. DP noise, and DP-SGD's Poisson batch, are drawn from `secrets`, never from a seed
the server knows.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, MetricRecord
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM, KEY_NORM_BIT
from torch import nn

from clients.ledgers import NodeLedgers
from clients.policy import Ask, DpPolicy
from fedsnn.core.config import RunConfig
from fedsnn.core.defense_config import DpSgdConfig, LocalDpConfig, SpikeDpConfig
from fedsnn.core.models import ModelSpec
from fedsnn.core.models.encoders import FramesEncoder
from fedsnn.core.privacy.accounting import gaussian_epsilon, replace_one_multiplier
from fedsnn.core.privacy.clipping import add_gaussian_noise, clip_update
from fedsnn.core.privacy.dpsgd import (DpSgdRound, DpSgdSettings, noise_multiplier_for,
                                       poisson_sample_rate, secret_generator)
from fedsnn.core.privacy.ledger import GaussianLedger, OpacusLedger
from fedsnn.core.privacy.spikes import SpikeLedger, build_mechanism, debiased_rate, poisson_spikes
from fedsnn.core.privacy.units import LOCAL_UNIT
from fedsnn.core.protocol import (ADAPTIVE_FLAG, CENTRAL_DP_FLAG, CLIENT_DP_FLAG, EQUAL_WEIGHT_KEY,
                                  released_metrics)

Config = Mapping[str, Any]     # a round's config (a ConfigRecord, or a dict in tests)


# -- one round's plan ----------------------------------------------------------------------------

@dataclass(frozen=True)
class PublicCounts:
    """What a protected reply says about its size: functions of n̂ and the settings only."""

    num_examples: int
    local_steps: int


@dataclass
class RoundPrivacy:
    """One round's client-side privacy (built by `plan_round`, run by the pipeline)."""

    config: Config
    ledgers: NodeLedgers
    counts: PublicCounts
    spike: tuple[SpikeLedger, int] | None = None   # ledger, time steps T
    dp_sgd: DpSgdRound | None = None
    local: LocalDpConfig | None = None

    @property
    def protected(self) -> bool:
        return bool(self.config.get(CLIENT_DP_FLAG))

    def encode(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The inputs training may see. Without spike-level DP: `x` itself. With it: x rate-coded
        as spikes and privatized once (a spiking model then reads them as frames; an ANN gets
        their debiased rate image); the release is counted in the node's ledger."""
        if self.spike is None:
            return x
        ledger, steps = self.spike
        ledger.record()
        generator = secret_generator()
        spikes = ledger.mechanism(poisson_spikes(x, time_steps=steps, generator=generator),
                                  generator=generator)
        if getattr(model, "is_spiking", False):
            model.encoder = FramesEncoder(steps)  # type: ignore[assignment]
            return spikes
        return debiased_rate(spikes, flip_probability=ledger.mechanism.flip_probability)

    def release(self, update: ArrayRecord, metrics: Mapping[str, Any], *, sent: ArrayRecord
                ) -> tuple[ArrayRecord, MetricRecord]:
        """What leaves the node: the update privatized as the round asks (local DP, then central
        DP's client-side clipping) and the metrics it may send (any node: honest or Byzantine).

        Args:
            update: the arrays training produced.
            metrics: training's metrics.
            sent: the global arrays the server sent (the update is measured from them).
        """
        metrics = dict(metrics)
        config = self.config
        if CENTRAL_DP_FLAG in config or self.local is not None:
            keys = list(sent.keys())
            arrays = [update[key].numpy() for key in keys]
            reference = [sent[key].numpy() for key in keys]
            if self.local is not None:  # first: what follows is post-processing
                arrays = self._local_dp(arrays, reference, self.local)
            if config.get(CENTRAL_DP_FLAG):
                metrics[EQUAL_WEIGHT_KEY] = 1.0
                if KEY_CLIPPING_NORM in config:
                    clipped = clip_update(arrays, reference,
                                          clipping_norm=float(config[KEY_CLIPPING_NORM]))
                    arrays = clipped.arrays
                    if config.get(ADAPTIVE_FLAG):
                        metrics[KEY_NORM_BIT] = int(clipped.clipped)
            update = ArrayRecord({k: Array(np.asarray(v)) for k, v in zip(keys, arrays)})
        if self.protected:
            metrics.update(self._figures())
        return update, MetricRecord(released_metrics(metrics, config))

    def _local_dp(self, arrays: list[np.ndarray], reference: list[np.ndarray],
                  local: LocalDpConfig) -> list[np.ndarray]:
        """Clip to C, add N(0, (zC)²) from a secret generator; record the release."""
        noisy = clipped_noisy(arrays, reference, clipping_norm=local.clipping_norm,
                              noise_multiplier=local.noise_multiplier)
        self._local_ledger(local).record(
            noise_multipliers=(replace_one_multiplier(local.noise_multiplier),))
        return noisy

    def _local_ledger(self, local: LocalDpConfig) -> GaussianLedger:
        ledger = self.ledgers.ledgers.setdefault(
            "local-dp", GaussianLedger(local.accountant, unit=LOCAL_UNIT))
        return ledger  # type: ignore[return-value]

    def _figures(self) -> dict[str, float | int]:
        """A protected reply's counts (public) and privacy figures (from the node's ledgers)."""
        figures: dict[str, float | int] = {
            "num-examples": self.counts.num_examples, "local-steps": self.counts.local_steps,
            "dp-epsilon-understated": int(self.ledgers.understated_from > 0)}
        if self.local is not None:
            figures["local-dp-client-epsilon"] = self._local_ledger(self.local).epsilon(
                self.local.delta)
            figures["local-dp-client-epsilon-release"] = _local_release_epsilon(self.local)
        if self.dp_sgd is not None:
            figures["dp-sgd-sample-epsilon"] = self.dp_sgd.ledger.epsilon(
                self.dp_sgd.settings.delta)
            figures["dp-sgd-noise-multiplier"] = self.dp_sgd.settings.noise_multiplier
        if self.spike is not None:
            figures["spike-dp-bit-epsilon"] = self.spike[0].epsilon_bit
            figures["spike-dp-sample-epsilon"] = self.spike[0].epsilon()
        return figures


def plan_round(config: Config, run: RunConfig, spec: ModelSpec, ledgers: NodeLedgers, *,
               public_examples: int, policy: DpPolicy | None = None) -> RoundPrivacy:
    """The round's client-side privacy, as the round's config asks and the node's policy allows.

    Args:
        config: the round's train config (the defenses the server's wrappers asked for).
        run: the run config (update mode, local epochs, batch size).
        spec: the model spec (T for a spiking model's spikes).
        ledgers: the node's ledgers (`NodeLedgers.open`).
        public_examples: n̂, the node's public example count.
        policy: the node's floor (`clients.policy`).

    Raises:
        PolicyRefused: the round asks for less than the node's policy.
        SpikeBudgetExhausted: one more spike release would exceed its budget.
        LedgerError: the node's ledger was made with other settings.
        DefenseConfigError: a defense's setting is missing or cannot work (names the key).
    """
    plan = RoundPrivacy(config, ledgers, public_counts(run, public_examples, config))
    asks: list[Ask] = []
    if LocalDpConfig.asked(config):
        plan.local = LocalDpConfig.from_config(config)
        asks.append(_local_ask(plan, plan.local))
    if DpSgdConfig.asked(config):
        plan.dp_sgd = _dp_sgd_round(DpSgdConfig.from_config(config), run, spec, ledgers,
                                    public_examples)
        plan.counts = public_counts(run, public_examples, config, plan.dp_sgd)
        asks.append(_dp_sgd_ask(plan.dp_sgd))
    if SpikeDpConfig.asked(config):
        plan.spike = _spike_ledger(SpikeDpConfig.from_config(config), spec, ledgers)
        ledger = plan.spike[0]
        ledger.check(ledger.releases + 1)
        asks.append(Ask("spike-level DP", None, lambda: ledger.sample_epsilon(1),
                        lambda: ledger.sample_epsilon(ledger.releases + 1)))
    (policy or DpPolicy()).check(asks)
    return plan


def public_counts(run: RunConfig, public_examples: int, config: Config,
                  dp_sgd: DpSgdRound | None = None) -> PublicCounts:
    """`num-examples` and `local-steps` of a protected reply, from n̂ and the settings: FedAvg
    n̂ and E·⌈n̂/B⌉ (DP-SGD takes exactly that many Poisson steps), FedSGD min(B, n̂) (DP-SGD:
    its expected Poisson batch q·n̂) and one step."""
    if dp_sgd is not None:
        expected = int(public_examples * dp_sgd.sample_rate)
        return PublicCounts(public_examples if run.update_mode == "fedavg" else expected,
                            dp_sgd.steps)
    if run.update_mode == "gradient":
        return PublicCounts(min(run.batch_size, public_examples), 1)
    return PublicCounts(public_examples, run.local_epochs * math.ceil(public_examples / run.batch_size))


def _local_release_epsilon(local: LocalDpConfig) -> float:
    """Client-level ε (replace-one) of one local DP release."""
    return gaussian_epsilon(noise_multiplier=replace_one_multiplier(local.noise_multiplier),
                            releases=1, delta=local.delta, accountant=local.accountant)


def _local_ask(plan: RoundPrivacy, local: LocalDpConfig) -> Ask:
    def total() -> float:
        ledger = copy.deepcopy(plan._local_ledger(local))
        ledger.record(noise_multipliers=(replace_one_multiplier(local.noise_multiplier),))
        return ledger.epsilon(local.delta)

    return Ask("local DP", local.noise_multiplier, lambda: _local_release_epsilon(local), total)


def _dp_sgd_round(wire: DpSgdConfig, run: RunConfig, spec: ModelSpec, ledgers: NodeLedgers,
                  public_examples: int) -> DpSgdRound:
    """σ for the run (Opacus' calibration when a target ε is set), at the public rate q =
    1/⌈n̂/B⌉ over the public step count; a spiking model has [T, B, ...] inside (batch_first)."""
    settings = DpSgdSettings(
        max_grad_norm=wire.max_grad_norm, delta=wire.delta,
        noise_multiplier=wire.noise_multiplier, target_epsilon=wire.target_epsilon,
        total_epochs=wire.total_epochs, accountant=wire.accountant,
        batch_first=not spec.is_spiking)
    rate = poisson_sample_rate(public_examples, run.batch_size)
    per_epoch = 1 if run.update_mode == "gradient" else math.ceil(public_examples / run.batch_size)
    sigma = noise_multiplier_for(settings, sample_rate=rate,
                                 steps=settings.total_epochs * per_epoch)
    ledger = ledgers.ledgers.setdefault("dp-sgd", OpacusLedger(settings.accountant))
    steps = 1 if run.update_mode == "gradient" else run.local_epochs * per_epoch
    return DpSgdRound(dataclasses.replace(settings, noise_multiplier=sigma, target_epsilon=0.0),
                      ledger, public_examples, rate, steps)


def _dp_sgd_ask(dp_sgd: DpSgdRound) -> Ask:
    sigma, delta = dp_sgd.settings.noise_multiplier, dp_sgd.settings.delta

    def after(ledger: OpacusLedger) -> float:
        ledger.step(noise_multiplier=sigma, sample_rate=dp_sgd.sample_rate, steps=dp_sgd.steps)
        return ledger.epsilon(delta)

    return Ask("DP-SGD", sigma, lambda: after(OpacusLedger(dp_sgd.ledger.accountant)),
               lambda: after(copy.deepcopy(dp_sgd.ledger)))


def _spike_ledger(wire: SpikeDpConfig, spec: ModelSpec, ledgers: NodeLedgers
                  ) -> tuple[SpikeLedger, int]:
    """Spike-level DP's ledger (the node's count continued) and T for this round. A spiking model
    privatizes its own T steps; an ANN the configured time steps (`SpikeDpConfig.time_steps`)."""
    steps = spec.time_steps if spec.is_spiking else wire.time_steps
    mechanism = build_mechanism(wire.mechanism, epsilon_bit=wire.epsilon_bit,
                                keep_probability=wire.keep_probability)
    ledger = SpikeLedger(mechanism,
                         bits_per_sample=steps * spec.in_channels * spec.image_size ** 2,
                         delta=wire.delta, budget=wire.budget, accountant=wire.accountant)
    saved = ledgers.ledgers.get("spike-dp")
    if saved is not None:
        ledger.load_state_dict(saved.state_dict())
    ledgers.ledgers["spike-dp"] = ledger
    return ledger, steps


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
    N(0, (zC)²) drawn from a secret generator (local DP's release and the firewall's `harden`)."""
    clipped = clip_update(arrays, reference, clipping_norm=clipping_norm).arrays
    return add_gaussian_noise(clipped, std=noise_multiplier * clipping_norm,
                              generator=np.random.default_rng(secrets.randbits(128)))
