"""Compose the configured defenses around the aggregator (`defenses = "central-dp,local-dp"`).

Order, inside out: central DP wraps the aggregator itself (it must see the plain mean); the
client-side defenses (local DP, DP-SGD, spike-level DP) wrap that and only add train-config
entries and privacy figures, so their order among themselves does not matter. The curious server
and reply validation (ServerApp) go outside all of them: they see what the clients sent.
"""

from __future__ import annotations

from collections.abc import Callable

from flwr.serverapp.strategy import Strategy

from fedsnn.core.config import RunConfig, defense_names
from fedsnn.core.data import load_dataset
from fedsnn.core.privacy.accounting import gaussian_noise_multiplier
from fedsnn.core.protocol import EQUAL_WEIGHT_KEY
from strategies.dp import CentralDP
from strategies.dp_client import DpSgd, LocalDP
from strategies.spike_dp import SpikeDP


def aggregation_weight_key(config: RunConfig) -> str:
    """The metric FedAvg weights by: `dp-weight` (equal weights) under central DP, otherwise
    `num-examples`."""
    return EQUAL_WEIGHT_KEY if "central-dp" in defense_names(config) else "num-examples"


def _noise(config: RunConfig, *, noise_multiplier: float, target_epsilon: float,
           sensitivity_factor: float = 1.0) -> float:
    """z from the config, or the z whose `num-server-rounds` releases spend `target_epsilon`
    (at `dp-delta`, by the same accountant that reports ε). `sensitivity_factor` is Δ / C."""
    if target_epsilon <= 0:
        return noise_multiplier
    return sensitivity_factor * gaussian_noise_multiplier(
        target_epsilon=target_epsilon, delta=config.dp_delta, releases=config.num_server_rounds,
        accountant=config.dp_accountant)


def _central(strategy: Strategy, config: RunConfig) -> Strategy:
    return CentralDP(strategy, clipping=config.central_dp_clipping,
                     clipping_norm=config.central_dp_clipping_norm,
                     noise_multiplier=_noise(config, noise_multiplier=config.central_dp_noise_multiplier,
                                             target_epsilon=config.central_dp_target_epsilon,
                                             sensitivity_factor=2.0),  # replace-one: Δ = 2C
                     delta=config.dp_delta, accountant=config.dp_accountant)


def _local(strategy: Strategy, config: RunConfig) -> Strategy:
    return LocalDP(strategy, clipping_norm=config.local_dp_clipping_norm,
                   noise_multiplier=_noise(config, noise_multiplier=config.local_dp_noise_multiplier,
                                           target_epsilon=config.local_dp_target_epsilon,
                                           sensitivity_factor=2.0),
                   delta=config.dp_delta, accountant=config.dp_accountant)


def _dp_sgd(strategy: Strategy, config: RunConfig) -> Strategy:
    epochs_per_round = 1 if config.update_mode == "gradient" else config.local_epochs
    return DpSgd(strategy, max_grad_norm=config.dp_sgd_max_grad_norm,
                 noise_multiplier=config.dp_sgd_noise_multiplier,
                 target_epsilon=config.dp_sgd_target_epsilon,
                 total_epochs=config.num_server_rounds * epochs_per_round,
                 delta=config.dp_delta, accountant=config.dp_accountant)


def _spike(strategy: Strategy, config: RunConfig) -> Strategy:
    channels = load_dataset(config.dataset, config.image_size).in_channels
    return SpikeDP(strategy, mechanism=config.spike_dp_mechanism,
                   epsilon_bit=config.spike_dp_epsilon_bit,
                   keep_probability=config.spike_dp_keep_probability,
                   time_steps=config.time_steps,
                   sample_shape=(channels, config.image_size, config.image_size),
                   delta=config.dp_delta, budget=config.spike_dp_budget,
                   accountant=config.dp_accountant)


# name -> wrapper factory; applied in this order (central DP innermost)
DEFENSE_WRAPPERS: dict[str, Callable[[Strategy, RunConfig], Strategy]] = {
    "central-dp": _central,
    "local-dp": _local,
    "dp-sgd": _dp_sgd,
    "spike-dp": _spike,
}


def wrap_defenses(strategy: Strategy, config: RunConfig) -> Strategy:
    """`strategy` inside the defenses named in `config.defenses` (unchanged when there are none).

    Example:
        >>> config = RunConfig.from_mapping({"defenses": "central-dp,local-dp"})
        >>> from flwr.serverapp.strategy import FedAvg
        >>> type(wrap_defenses(FedAvg(weighted_by_key="dp-weight"), config)).__name__
        'LocalDP'
    """
    names = defense_names(config)
    for name in names:
        if name not in DEFENSE_WRAPPERS:
            raise ValueError(f"Unknown defense {name!r}; expected one of {sorted(DEFENSE_WRAPPERS)}")
    for name, wrap in DEFENSE_WRAPPERS.items():
        if name in names:
            strategy = wrap(strategy, config)
    return strategy
