"""A Byzantine defense that drops replies whose update norm is far above the others'.

It sits in front of any aggregator (FedAvg, median, Krum, ...), in the style of Flower's DP
wrappers: it inspects the replies before delegating, because some inner strategies
(FedTrimmedAvg, Bulyan, FedMedian) consume the replies' arrays in place.

The outlier rule is the reply validator's (`strategies.validation.norm_outliers`: norm >
factor x the median of the *other* norms). The ServerApp's validator applies it with
`reject-norm-factor` (default 100) to catch broken replies; this wrapper is the tight setting
(`norm-filter`, e.g. 3) used as a defense, placed right in front of the aggregator.
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import INFO

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.common.logger import log
from flwr.serverapp.strategy import Strategy

from strategies.base import StrategyWrapper
from strategies.robust_updates import stack_updates
from strategies.validation import norm_outliers


class UpdateNormFilter(StrategyWrapper):
    """Drop replies with ‖w_i - w_global‖ > factor x the others' median norm, then delegate.

    Args:
        strategy: the strategy that aggregates what is kept.
        factor: multiple of the other replies' median update norm above which a reply is
            dropped (>= 1).

    Example:
        >>> from flwr.serverapp.strategy import FedMedian
        >>> strategy = UpdateNormFilter(FedMedian(), factor=3.0)
    """

    def __init__(self, strategy: Strategy, *, factor: float) -> None:
        if not factor >= 1.0:
            raise ValueError(f"Expected argument `factor` to be >= 1 but got {factor}")
        super().__init__(strategy)
        self.factor = factor
        self.dropped: dict[int, list[int]] = {}

    def describe(self) -> str:
        return f"Update-norm filter: drop norms > {self.factor} x the others' median"

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Drop the outlying updates (logged with their source node), aggregate the rest."""
        replies = list(replies)
        valid = [msg for msg in replies if not msg.has_error()]
        if not valid:
            return self.strategy.aggregate_train(server_round, replies)
        norms = np.linalg.norm(stack_updates([m.content for m in valid], self.round_arrays), axis=1)
        keep = ~np.asarray(norm_outliers(norms.tolist(), self.factor), dtype=bool)
        dropped = [msg for msg, kept in zip(valid, keep, strict=True) if not kept]
        self.dropped[server_round] = [msg.metadata.src_node_id for msg in dropped]
        if dropped:
            log(INFO, "norm filter: round %d drops %d of %d replies (norms %s; median %.3g)",
                server_round, len(dropped), len(valid),
                ", ".join(f"{n:.3g}" for n in norms[~keep]), np.median(norms))
        dropped_ids = {id(msg) for msg in dropped}
        kept = [msg for msg in replies if id(msg) not in dropped_ids]
        return self.strategy.aggregate_train(server_round, kept)
