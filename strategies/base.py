"""A strategy wrapper that delegates everything, in the style of Flower's DP wrappers.

Subclasses override what they need (typically `aggregate_train`, inspecting replies *before*
delegating, because some inner strategies change replies in place). It remembers the arrays it
sent in the current round, which every update-based wrapper needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import INFO

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy


class StrategyWrapper(Strategy):
    """Delegate every call to `strategy`; keep the arrays sent in the current round."""

    label = "wrapper"

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self.round_arrays: ArrayRecord | None = None

    def describe(self) -> str:
        """One line for `summary()`."""
        return self.label

    def summary(self) -> None:
        """Log this wrapper, then the wrapped strategy."""
        log(INFO, "\t├──> %s", self.describe())
        self.strategy.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Remember the arrays sent this round, then delegate."""
        self.round_arrays = arrays
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Delegate."""
        return self.strategy.aggregate_train(server_round, replies)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        """Delegate."""
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        """Delegate."""
        return self.strategy.aggregate_evaluate(server_round, replies)
