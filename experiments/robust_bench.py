"""Attack × aggregator experiments in one process, with Flower's strategies and the ClientApp.

`run_federation` runs a strategy's usual round loop (`Strategy.start`) on the in-process grid of
fedsnn/tools/local_grid.py, so the strategies aggregate real `Message` replies built by the client
code (honest or Byzantine), exactly as in a simulation, without starting Ray. As in the
ServerApp, the strategy sits behind the reply validator (`reject-norm-factor`). Federated
evaluation is skipped; the global model is evaluated centrally on the test set after each round.

`HonestAuditor` watches the grid's replies and keeps each round's honest updates, so that the
aggregate can be compared with the honest-only FedAvg update (`cosine`).
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord

from fedsnn.core.training import evaluate
from fedsnn.core.config import RunConfig
from fedsnn.core.data import load_dataset
from fedsnn.core.models import build_model, spec_for
from fedsnn.tools.local_grid import LocalGrid, server_identity
from strategies.robust_updates import flat64, reply_arrays
from strategies.stack import build_strategy
from strategies.validation import ValidatingStrategy


@dataclass
class HonestRound:
    """What the auditor keeps of one round: the global sent and the honest replies' updates."""

    global_flat: np.ndarray
    updates: list[np.ndarray] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)

    def mean_update(self) -> np.ndarray:
        """The honest-only FedAvg update (weighted by `num-examples`)."""
        weights = np.asarray(self.weights)
        return (weights[:, None] * np.stack(self.updates)).sum(0) / weights.sum()


class HonestAuditor:
    """An observer of a grid's (message, reply) pairs that keeps, per round, the global model
    sent and the updates of the partitions `is_honest` accepts."""

    def __init__(self, is_honest: Callable[[int], bool]) -> None:
        self.is_honest = is_honest
        self.rounds: dict[int, HonestRound] = {}

    def __call__(self, message: Message, reply: Message) -> None:
        server_round = int(message.content["config"]["server-round"])
        if server_round not in self.rounds:
            self.rounds[server_round] = HonestRound(flat64(message.content["arrays"]))
        record = self.rounds[server_round]
        metrics = next(iter(reply.content.metric_records.values()))
        if self.is_honest(int(metrics["partition-id"])):
            keys = list(message.content["arrays"].keys())
            record.updates.append(flat64(reply_arrays(reply.content), keys) - record.global_flat)
            record.weights.append(float(metrics["num-examples"]))


@dataclass(frozen=True)
class FederationResult:
    """Accuracy after each round (index 0: the initial model) and, per round, the cosine of
    the aggregate update to the honest-only FedAvg update (NaN when the round kept the model)."""

    accuracy: list[float]
    cosine: list[float]
    seconds: float

    @property
    def final_accuracy(self) -> float:
        return self.accuracy[-1]

    @property
    def mean_cosine(self) -> float:
        finite = [c for c in self.cosine if np.isfinite(c)]
        return float(np.mean(finite)) if finite else float("nan")


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / norms) if norms > 0 else float("nan")


def run_federation(overrides: Mapping[str, Any], num_nodes: int) -> FederationResult:
    """Run `num-server-rounds` rounds of the configured federation with `num_nodes` nodes, the
    first `num-byzantine` partitions malicious.

    Example:
        >>> result = run_federation({"model": "lenet", "num-server-rounds": 2,
        ...                          "min-available-nodes": 5}, num_nodes=5)  # doctest: +SKIP
    """
    from client_app import create_client_app

    start = time.perf_counter()
    config = RunConfig.from_mapping(overrides)
    random.seed(config.seed)  # Flower samples nodes with `random`
    data = load_dataset(config.dataset, config.image_size)
    model = build_model(spec_for(config, data.in_channels, data.num_classes, data.image_size),
                        dlg_init=config.dlg_init, seed=config.seed)
    grid = LocalGrid.partitioned([create_client_app(overrides)] * num_nodes, overrides)
    grid.skip_types = frozenset({"evaluate"})
    auditor = HonestAuditor(is_honest=lambda p: p >= config.num_byzantine)
    grid.after_reply = auditor
    accuracy: dict[int, float] = {}
    cosine: dict[int, float] = {}

    def central(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model.load_state_dict({k: v.float() for k, v in arrays.to_torch_state_dict().items()})
        accuracy[server_round] = evaluate(model, data.test_x, data.test_y)[1]
        if server_round in auditor.rounds:
            audit = auditor.rounds[server_round]
            aggregate = flat64(arrays) - audit.global_flat
            cosine[server_round] = (_cosine(aggregate, audit.mean_update())
                                    if np.any(aggregate) else float("nan"))
        return MetricRecord({"accuracy": accuracy[server_round]})

    strategy = ValidatingStrategy(build_strategy(config), norm_factor=config.reject_norm_factor)
    # Flower's ArrayRecord.to_numpy_ndarrays(keep_input=False) (Bulyan, FedMedian) calls
    # gc.collect() for every reply; with torch loaded that costs ~0.5 s each unless the
    # long-lived objects are frozen out of the collector's sight.
    gc.freeze()
    try:
        with server_identity():
            strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()),
                           num_rounds=config.num_server_rounds,
                           train_config=ConfigRecord({"lr": config.learning_rate}),
                           evaluate_fn=central)
    finally:
        gc.unfreeze()
    rounds = range(1, config.num_server_rounds + 1)
    return FederationResult([accuracy[r] for r in range(config.num_server_rounds + 1)],
                            [cosine.get(r, float("nan")) for r in rounds],
                            time.perf_counter() - start)
