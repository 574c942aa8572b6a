"""Build the server's strategy stack from the run config."""

from __future__ import annotations

from flwr.serverapp.strategy import Strategy

from fedsnn.core.config import RunConfig
from strategies.dp_stack import aggregation_weight_key, wrap_defenses
from strategies.aggregate_metrics import mean_scalar_metrics
from strategies.robust import build_aggregator


def build_strategy(config: RunConfig) -> Strategy:
    """The configured aggregator (FedAvg by default; robust rules in `strategies.robust`),
    weighted by `num-examples`, with per-client metrics kept out of the averages."""
    strategy = build_aggregator(
        config.aggregator,
        num_malicious=config.assumed_byzantine,
        trimmed_beta=config.trimmed_beta,
        multikrum_select=config.multikrum_select,
        norm_filter=config.norm_filter,
        fraction_train=config.fraction_train,
        fraction_evaluate=config.fraction_evaluate,
        min_train_nodes=config.min_available_nodes,
        min_evaluate_nodes=config.min_available_nodes,
        min_available_nodes=config.min_available_nodes,
        weighted_by_key=aggregation_weight_key(config),
        train_metrics_aggr_fn=mean_scalar_metrics,
        evaluate_metrics_aggr_fn=mean_scalar_metrics,
    )
    return wrap_defenses(strategy, config)  # DP defenses (strategies/dp_stack.py)
