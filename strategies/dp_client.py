"""Wrappers for defenses that run on the clients: local DP and DP-SGD (spike-level DP builds on
the same base in `strategies.spike_dp`).

A `ClientDefense` writes its settings into every round's train config (and `CLIENT_DP_FLAG` into
the evaluate config too: a protected node's replies carry only allow-listed metrics,
`fedsnn.core.protocol.PROTECTED_REPLY_KEYS`); `clients.privacy` applies them on the node (before the update leaves it) and reports the ε the node has spent, from the
node's own accountant. The wrapper adds the largest reported figure over the round's clients
(`<key>-max`) to the round's train metrics: clients' ε differ (data sizes), and the mean of
guarantees is not a guarantee.

These defenses protect against the server itself: what a curious server sees is already noised.
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import INFO

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedsnn.core.defense_config import ClientDefenseConfig, DpSgdConfig, LocalDpConfig
from fedsnn.core.privacy.accounting import gaussian_epsilon
from fedsnn.core.protocol import CLIENT_DP_FLAG
from strategies.base import StrategyWrapper

UNDERSTATED_KEY = "dp-epsilon-understated"  # 1: a node's ε is a lower bound (ledger lost)


class ClientDefense(StrategyWrapper):
    """Send `defense`'s settings to the clients every round; collect their `reported` privacy
    figures.

    Args:
        strategy: the wrapped strategy.
        defense: the settings the client side reads (`clients.privacy`); `settings` holds their
            train-config entries (`ClientDefenseConfig.to_config`).
        reported: metric keys clients report; each becomes `<key>-max` in the round's metrics.
    """

    label = "client defense"

    def __init__(self, strategy: Strategy, *, defense: ClientDefenseConfig,
                 reported: tuple[str, ...]) -> None:
        super().__init__(strategy)
        self.defense = defense
        self.settings = defense.to_config()
        # every protected reply says whether its node's ledger covers the run (issue 27)
        self.reported = (*reported, UNDERSTATED_KEY)

    def describe(self) -> str:
        return f"{self.label} ({', '.join(f'{k}={v}' for k, v in self.settings.items())})"

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Add this defense's settings to the round's train config, then delegate."""
        config.update(self.settings)
        config[CLIENT_DP_FLAG] = 1
        return super().configure_train(server_round, arrays, config, grid)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        """Flag the evaluation too: a protected node's loss and accuracy on its own test split
        are no DP release, so they do not leave it."""
        config[CLIENT_DP_FLAG] = 1
        return super().configure_evaluate(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Read the clients' figures before delegating (inner wrappers may change replies)."""
        replies = list(replies)
        worst: dict[str, float] = {}
        for reply in replies:
            if reply.has_error():
                continue
            for metrics in reply.content.metric_records.values():
                for key in self.reported:
                    if key in metrics:
                        worst[key] = max(worst.get(key, 0.0), float(metrics[key]))
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        if worst:
            metrics = metrics if metrics is not None else MetricRecord()
            metrics.update({f"{key}-max": value for key, value in worst.items()})
            log(INFO, "%s: round %d, %s", self.label, server_round,
                ", ".join(f"{k}-max={v:.4g}" for k, v in worst.items()))
        return arrays, metrics


class LocalDP(ClientDefense):
    """Local DP: each client clips its update to C and adds N(0, (zC)²) before sending it.

    The guarantee is client-level against anyone who sees the update (the server included): any
    two datasets of the client give updates at most 2C apart, so one release is the Gaussian
    mechanism with noise multiplier z/2; a client's releases compose over the rounds it joins.
    """

    label = "local DP"
    defense: LocalDpConfig

    def __init__(self, strategy: Strategy, *, clipping_norm: float, noise_multiplier: float,
                 delta: float, accountant: str = "rdp") -> None:
        if not (clipping_norm > 0 and noise_multiplier > 0):
            raise ValueError(f"local DP needs a positive clipping norm and noise multiplier, got "
                             f"C={clipping_norm}, z={noise_multiplier}")
        super().__init__(strategy, defense=LocalDpConfig(
            clipping_norm=clipping_norm, noise_multiplier=noise_multiplier, delta=delta,
            accountant=accountant),
            reported=("local-dp-client-epsilon", "local-dp-client-epsilon-release"))
        self.epsilon_release = gaussian_epsilon(noise_multiplier=noise_multiplier / 2, releases=1,
                                                delta=delta, accountant=accountant)

    def describe(self) -> str:
        return (f"{super().describe()}; client-level ε (replace-one) per release "
                f"{self.epsilon_release:.4g}")


class DpSgd(ClientDefense):
    """DP-SGD on the clients with Opacus (per-sample clipping and noise in local training); the
    clients keep their accountant's history across rounds and report per-sample ε."""

    label = "DP-SGD"
    defense: DpSgdConfig

    def __init__(self, strategy: Strategy, *, max_grad_norm: float, noise_multiplier: float,
                 target_epsilon: float, total_epochs: int, delta: float,
                 accountant: str = "rdp") -> None:
        super().__init__(strategy, defense=DpSgdConfig(
            max_grad_norm=max_grad_norm, noise_multiplier=noise_multiplier,
            target_epsilon=target_epsilon, total_epochs=total_epochs, delta=delta,
            accountant=accountant), reported=("dp-sgd-sample-epsilon", "dp-sgd-noise-multiplier"))
