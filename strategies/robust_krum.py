"""Krum, Multi-Krum and Bulyan (Flower's classes) with distances on float64 updates.

Flower's `compute_distances` uses ‖x‖² + ‖y‖² - 2 x·y on the float32 weights: late in
training the updates are small next to the weights and that difference cancels
catastrophically, so Krum's choice becomes noise. Here the same rule (score = sum of squared distances to the
n - f - 2 nearest others) is computed on updates in float64. Everything else is Flower's.
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import WARNING

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp.strategy import Bulyan, Krum, MultiKrum
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from strategies.robust_updates import RoundGlobal, stack_updates


def squared_distances(updates: np.ndarray) -> np.ndarray:
    """Pairwise squared L2 distances of the rows of `updates`, in float64, never negative."""
    updates = np.asarray(updates, dtype=np.float64)
    norms = np.einsum("ij,ij->i", updates, updates)
    distances = norms[:, None] + norms[None, :] - 2.0 * updates @ updates.T
    np.fill_diagonal(distances, 0.0)
    return np.maximum(distances, 0.0)


def krum_scores(updates: np.ndarray, num_malicious: int) -> np.ndarray:
    """Krum's score of each row: the sum of its squared distances to the n - f - 2 nearest
    other rows (Blanchard et al., 2017)."""
    n = len(updates)
    distances = squared_distances(updates)
    nearest = max(1, n - num_malicious - 2)
    others = np.where(np.eye(n, dtype=bool), np.inf, distances)
    return np.sort(others, axis=1)[:, :nearest].sum(axis=1)


def multikrum_indices(updates: np.ndarray, num_malicious: int, num_to_select: int) -> list[int]:
    """Indices of the `num_to_select` lowest Krum scores (0: n - f), best first."""
    count = num_to_select or len(updates) - num_malicious
    return np.argsort(krum_scores(updates, num_malicious), kind="stable")[:count].tolist()


class KrumOnUpdates(RoundGlobal):
    """Mixin: Multi-Krum selection on float64 updates from the round's global model."""

    def select_on_updates(self, contents: list[RecordDict], num_malicious: int,
                          num_to_select: int) -> list[RecordDict]:
        """Flower's `select_multikrum` contract, with distances measured on updates."""
        updates = stack_updates(contents, self.round_global)
        return [contents[i] for i in multikrum_indices(updates, num_malicious, num_to_select)]


class KrumAggregation(KrumOnUpdates):
    """Mixin for Krum and Multi-Krum: average the selected replies."""

    num_malicious_nodes: int
    num_nodes_to_select: int

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Average the selected replies; skip the round if fewer than 2f + 3 replied."""
        valid, _ = self._check_and_log_replies(replies, is_train=True)  # type: ignore[attr-defined]
        needed = 2 * self.num_malicious_nodes + 3
        if len(valid) < needed:
            log(WARNING, "Krum: %d valid replies, fewer than 2f + 3 = %d; round %d keeps the "
                "global model", len(valid), needed, server_round)
            return None, None
        selected = self.select_on_updates([msg.content for msg in valid],
                                          self.num_malicious_nodes, self.num_nodes_to_select)
        key = self.weighted_by_key  # type: ignore[attr-defined]
        return (aggregate_arrayrecords(selected, key),
                self.train_metrics_aggr_fn(selected, key))  # type: ignore[attr-defined]


class UpdateKrum(KrumAggregation, Krum):
    """Flower's Krum with distances on float64 updates."""


class UpdateMultiKrum(KrumAggregation, MultiKrum):
    """Flower's Multi-Krum with distances on float64 updates; `num_nodes_to_select=0` means
    n - f in each round."""


class UpdateBulyan(KrumOnUpdates, Bulyan):
    """Flower's Bulyan whose Multi-Krum pre-selection uses distances on float64 updates.

    Bulyan's own aggregation (and its 4f + 3 check) is Flower's; only `selection_rule` is ours.
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(selection_rule=self.select_on_updates, **kwargs)  # type: ignore[arg-type]
