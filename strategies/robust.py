"""Robust aggregation from the run config: Flower's strategies behind one registry.

| name           | Flower class           | tolerates f of n when     |
|----------------|------------------------|---------------------------|
| `fedavg`       | FedAvg                 | f = 0                     |
| `median`       | FedMedian              | n >= 2f + 1               |
| `krum`         | Krum (on updates)      | n >= 2f + 3               |
| `multikrum`    | MultiKrum (on updates) | n >= 2f + 3               |
| `trimmed-mean` | FedTrimmedAvg          | floor(beta n) >= f        |
| `bulyan`       | Bulyan (on updates)    | n >= 4f + 3               |

The node-count rules are checked before the run by `fedsnn.core.config` (`MIN_UPDATES`), with n the
fewest nodes a round can have. Krum-family distances are computed on float64 updates
(`strategies.robust_krum`). `norm-filter` puts `UpdateNormFilter` in front of any of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flwr.serverapp.strategy import FedAvg, FedMedian, FedTrimmedAvg, Strategy

from strategies.robust_filter import UpdateNormFilter
from strategies.robust_krum import UpdateBulyan, UpdateKrum, UpdateMultiKrum

# name -> (num_malicious, trimmed_beta, multikrum_select, Flower kwargs) -> strategy
AggregatorFactory = Callable[[int, float, int, dict[str, Any]], Strategy]

AGGREGATORS: dict[str, AggregatorFactory] = {
    "fedavg": lambda f, beta, m, kw: FedAvg(**kw),
    "median": lambda f, beta, m, kw: FedMedian(**kw),
    "krum": lambda f, beta, m, kw: UpdateKrum(num_malicious_nodes=f, **kw),
    "multikrum": lambda f, beta, m, kw: UpdateMultiKrum(num_malicious_nodes=f,
                                                        num_nodes_to_select=m, **kw),
    "trimmed-mean": lambda f, beta, m, kw: FedTrimmedAvg(beta=beta, **kw),
    "bulyan": lambda f, beta, m, kw: UpdateBulyan(num_malicious_nodes=f, **kw),
}


def build_aggregator(name: str, *, num_malicious: int = 0, trimmed_beta: float = 0.2,
                     multikrum_select: int = 0, norm_filter: float = 0.0,
                     **strategy_kwargs: Any) -> Strategy:
    """The aggregation strategy `name`, optionally behind the update-norm filter.

    Args:
        name: one of `AGGREGATORS`.
        num_malicious: f, the number of Byzantine clients the rule must tolerate.
        trimmed_beta: fraction cut at each end per coordinate (`trimmed-mean`).
        multikrum_select: updates averaged by `multikrum` (0: n - f).
        norm_filter: 0 (off) or the factor over the median update norm above which replies
            are dropped before aggregation.
        **strategy_kwargs: passed to the Flower strategy (fractions, node minimums, metric
            aggregation functions, `weighted_by_key`).

    Raises:
        ValueError: unknown name.

    Example:
        >>> strategy = build_aggregator("krum", num_malicious=2, min_available_nodes=7)
        >>> type(strategy).__name__
        'UpdateKrum'
    """
    if name not in AGGREGATORS:
        raise ValueError(f"Unknown aggregator {name!r}; expected one of {sorted(AGGREGATORS)}")
    strategy = AGGREGATORS[name](num_malicious, trimmed_beta, multikrum_select, strategy_kwargs)
    return UpdateNormFilter(strategy, factor=norm_filter) if norm_filter else strategy
