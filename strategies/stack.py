"""Build the server's strategy stack from the run config."""

from __future__ import annotations

from flwr.serverapp.strategy import FedAvg, Strategy

from fedsnn.config import RunConfig
from strategies.metrics import mean_scalar_metrics


def build_strategy(config: RunConfig) -> Strategy:
    """FedAvg weighted by `num-examples`, with per-client metrics kept out of the averages."""
    return FedAvg(
        fraction_train=config.fraction_train,
        fraction_evaluate=config.fraction_evaluate,
        min_train_nodes=config.min_available_nodes,
        min_evaluate_nodes=config.min_available_nodes,
        min_available_nodes=config.min_available_nodes,
        weighted_by_key="num-examples",
        train_metrics_aggr_fn=mean_scalar_metrics,
        evaluate_metrics_aggr_fn=mean_scalar_metrics,
    )
