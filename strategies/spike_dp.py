"""Spike-level DP as a strategy wrapper that configures the clients.

Each round, every client rate-codes the samples it trains on as T-step binary spike tensors and
privatizes them once (randomized response, or its subsampling variant; `fedsnn.core.privacy.spikes`);
local training only ever sees the privatized spikes (an ANN sees their debiased rate image). So
a sample is *released* once per round it is trained on.

The wrapper reports, every round, the per-bit ε (`spike-dp-bit-epsilon`: NOT a per-sample
guarantee) and the honest per-sample ε after the rounds so far (`spike-dp-sample-epsilon`: all
T·C·H·W bits of a sample, every release, composed by dp-accounting). With a budget
(`spike-dp-budget`), the round whose release would exceed it is not started: training stops with
`SpikeBudgetSpent`, whose message says what was spent and what to change. Clients enforce the
same budget with their own count (`clients.privacy`).
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import ERROR

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedsnn.core.defense_config import SpikeDpConfig
from fedsnn.core.privacy.spikes import SpikeBudgetExhausted, SpikeLedger, build_mechanism
from strategies.dp_client import ClientDefense
from strategies.rounds import RunStopped


class SpikeBudgetSpent(RunStopped):
    """The per-sample spike-level DP budget does not allow another round."""


class SpikeDP(ClientDefense):
    """Configure clients to privatize their input spikes; account per bit and per sample.

    Args:
        strategy: the wrapped strategy.
        mechanism: "randomized-response" or "subsample".
        epsilon_bit: randomized response's per-bit ε.
        keep_probability: subsample's keep probability q.
        time_steps: T of the spike tensors.
        sample_shape: (C, H, W) of one input.
        delta: δ of the per-sample ε.
        budget: per-sample ε budget (0: none).
        accountant: "rdp" or "pld".
    """

    label = "spike-level DP"
    defense: SpikeDpConfig

    def __init__(self, strategy: Strategy, *, mechanism: str, epsilon_bit: float,
                 keep_probability: float, time_steps: int, sample_shape: tuple[int, int, int],
                 delta: float, budget: float = 0.0, accountant: str = "rdp") -> None:
        channels, height, width = sample_shape
        self.ledger = SpikeLedger(
            build_mechanism(mechanism, epsilon_bit=epsilon_bit, keep_probability=keep_probability),
            bits_per_sample=time_steps * channels * height * width, delta=delta, budget=budget,
            accountant=accountant)
        super().__init__(strategy, defense=SpikeDpConfig(
            mechanism=mechanism, epsilon_bit=epsilon_bit, keep_probability=keep_probability,
            time_steps=time_steps, budget=budget, delta=delta, accountant=accountant),
            reported=("spike-dp-sample-epsilon",))

    @property
    def releases(self) -> int:
        return self.ledger.releases

    def describe(self) -> str:
        return (f"{super().describe()}; ε_bit {self.ledger.epsilon_bit:.4g}, per-sample ε per "
                f"release {self.ledger.sample_epsilon(1):.4g} over "
                f"{self.ledger.bits_per_sample} bits")

    def state_dict(self) -> dict[str, object]:
        """The ledger's state (its release count and what it counts), for checkpoints."""
        return self.ledger.state_dict()

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Continue a checkpoint's count: the budget then covers the releases made before it.

        Raises:
            LedgerError: the checkpoint counted releases of another mechanism or record size.
        """
        self.ledger.load_state_dict(state)

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Start the round only if one more release fits the budget.

        Raises:
            SpikeBudgetSpent: the budget is spent; the message says by how much.
        """
        try:
            self.ledger.check(self.releases + 1)
        except SpikeBudgetExhausted as error:
            log(ERROR, "%s", error)
            raise SpikeBudgetSpent(f"round {server_round}: {error}") from None
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Count the release and report the per-bit and per-sample ε."""
        replies = list(replies)
        arrays, metrics = super().aggregate_train(server_round, replies)
        if any(not reply.has_error() for reply in replies):
            self.ledger.count += 1  # the round ran: configure_train checked the budget
        metrics = metrics if metrics is not None else MetricRecord()
        metrics.update({"spike-dp-bit-epsilon": self.ledger.epsilon_bit,
                        "spike-dp-sample-epsilon": self.ledger.epsilon(),
                        "spike-dp-delta": self.ledger.delta})
        return arrays, metrics
