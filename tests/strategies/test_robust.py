"""Robust aggregators on hand-made updates match their definitions; impossible settings stop
the run before it starts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg, FedTrimmedAvg
from flwr.serverapp.strategy.multikrum import compute_distances

from fedsnn.core.config import AGGREGATORS, ConfigError, RunConfig
from strategies.robust import AGGREGATORS as AGGREGATOR_REGISTRY
from strategies.robust import build_aggregator
from strategies.robust_filter import UpdateNormFilter
from strategies.robust_krum import UpdateBulyan, UpdateKrum, krum_scores, squared_distances
from strategies.stack import build_strategy


pytestmark = pytest.mark.usefixtures("flower_server_identity")


class Nodes:
    """Just enough of a Grid for configure_train: `n` connected nodes."""

    def __init__(self, n: int) -> None:
        self.n = n

    def get_node_ids(self) -> list[int]:
        return list(range(1, self.n + 1))


def record(vector: np.ndarray) -> ArrayRecord:
    """A two-array 'model' holding `vector` (first two values in 'a', the rest in 'b')."""
    vector = np.asarray(vector, dtype=np.float32)
    return ArrayRecord({"a": Array(vector[:2].copy()), "b": Array(vector[2:].copy())})


def replies(vectors: list[Any], weights: list[int] | None = None) -> list[Message]:
    """Train replies from nodes 1..n carrying `vectors` and `num-examples`."""
    weights = weights or [1] * len(vectors)
    out = []
    for node, (vector, weight) in enumerate(zip(vectors, weights, strict=True), start=1):
        instruction = Message(RecordDict(), dst_node_id=node, message_type="train")
        content = RecordDict({"arrays": record(np.asarray(vector)),
                              "metrics": MetricRecord({"num-examples": weight})})
        out.append(Message(content, reply_to=instruction))
    return out


def flat(arrays: ArrayRecord | None) -> np.ndarray:
    assert arrays is not None
    return np.concatenate([arrays["a"].numpy().ravel(), arrays["b"].numpy().ravel()])


HONEST = [[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.1, 0.0], [-0.1, 0.0, 0.0], [0.0, -0.1, 0.0]]
BYZANTINE = [[10.0, 10.0, 10.0], [-10.0, 10.0, -10.0]]


def test_median_is_the_coordinate_wise_median() -> None:
    vectors = [[1, 5, -3], [2, 4, 100], [3, 3, 0], [40, 2, 1], [-7, 1, 2]]
    arrays, _ = build_aggregator("median").aggregate_train(1, replies(vectors))
    assert np.allclose(flat(arrays), [2, 3, 1])


def test_krum_picks_the_honest_update_closest_to_its_neighbours() -> None:
    strategy = build_aggregator("krum", num_malicious=2)
    arrays, _ = strategy.aggregate_train(1, replies(HONEST + BYZANTINE))
    assert np.allclose(flat(arrays), HONEST[0])  # the centre of the honest cluster


def test_krum_scores_follow_the_definition() -> None:
    updates = np.array(HONEST + BYZANTINE)
    scores = krum_scores(updates, num_malicious=2)  # n - f - 2 = 3 nearest others
    for i, row in enumerate(updates):
        others = sorted(float(np.sum((row - other) ** 2)) for j, other in enumerate(updates)
                        if j != i)
        assert scores[i] == pytest.approx(sum(others[:3]))


def test_multikrum_averages_the_n_minus_f_best() -> None:
    strategy = build_aggregator("multikrum", num_malicious=2)  # select 0: n - f = 5
    arrays, _ = strategy.aggregate_train(1, replies(HONEST + BYZANTINE))
    assert np.allclose(flat(arrays), np.mean(HONEST, axis=0), atol=1e-7)


def test_trimmed_mean_drops_the_extremes_of_each_coordinate() -> None:
    vectors = [[1, -100, 5], [2, 2, 5], [3, 3, 5], [4, 4, 5], [100, 5, -50]]
    strategy = build_aggregator("trimmed-mean", trimmed_beta=0.2)  # cut 1 per side of 5
    assert isinstance(strategy, FedTrimmedAvg)
    arrays, _ = strategy.aggregate_train(1, replies(vectors))
    assert np.allclose(flat(arrays), [3, 3, 5])


def test_bulyan_selects_by_krum_then_averages_the_values_closest_to_the_median() -> None:
    # n = 7, f = 1: Krum keeps theta = 5 (the honest rows), then per coordinate the mean of the
    # beta = 3 values closest to the median of those 5.
    honest = [[1, 10, 0], [2, 20, 0], [3, 30, 0], [4, 40, 0], [5, 50, 0.1]]
    strategy = build_aggregator("bulyan", num_malicious=1)
    assert isinstance(strategy, UpdateBulyan)
    arrays, _ = strategy.aggregate_train(1, replies(honest + [[90, 90, 90], [-90, 90, -90]]))
    assert np.allclose(flat(arrays), [3, 30, 0], atol=1e-6)


def test_krum_distances_are_taken_on_float64_updates() -> None:
    # Late in training: weights ~300, updates ~1e-3. Flower's float32 ‖x‖² + ‖y‖² - 2x·y on the
    # weights is then pure rounding noise, larger than the distances themselves.
    rng = np.random.default_rng(0)
    global_weights = np.full(1000, 300.0, dtype=np.float32)
    honest = [1e-3 * rng.standard_normal(1000) for _ in range(5)]
    byzantine = [2e-2 * rng.standard_normal(1000) for _ in range(2)]
    weights = [(global_weights + u).astype(np.float32) for u in honest + byzantine]
    updates = np.stack([w.astype(np.float64) - global_weights for w in weights])
    truth = squared_distances(updates)

    flower_error = np.abs(compute_distances([record(w) for w in weights]) - truth).max()
    assert flower_error > 10 * truth[:5, :5].max()

    strategy = UpdateKrum(num_malicious_nodes=2, min_available_nodes=7, min_train_nodes=7)
    strategy.configure_train(1, record(global_weights), ConfigRecord(), Nodes(7))  # type: ignore[arg-type]
    arrays, _ = strategy.aggregate_train(1, replies(weights))
    best = int(np.argmin(krum_scores(updates, 2)))
    assert best < 5 and np.array_equal(flat(arrays), weights[best])


def test_krum_skips_a_round_with_fewer_than_2f_plus_3_replies() -> None:
    strategy = build_aggregator("krum", num_malicious=2)
    assert strategy.aggregate_train(1, replies(HONEST + BYZANTINE[:1])) == (None, None)


def test_norm_filter_drops_the_loud_update_then_delegates() -> None:
    strategy = UpdateNormFilter(FedAvg(), factor=3.0)
    global_weights = np.array([1.0, 1.0, 1.0])
    strategy.configure_train(1, record(global_weights), ConfigRecord(), Nodes(5))  # type: ignore[arg-type]
    vectors = [global_weights + u for u in ([0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.1], [0.1, 0.1, 0],
                                            [5.0, 5.0, 5.0])]
    arrays, _ = strategy.aggregate_train(1, (m for m in replies(vectors)))  # a generator
    assert np.allclose(flat(arrays), np.mean(vectors[:4], axis=0))
    assert strategy.dropped[1] == [5]


def test_norm_filter_can_sit_in_front_of_an_in_place_aggregator() -> None:
    strategy = build_aggregator("trimmed-mean", trimmed_beta=0.2, norm_filter=3.0)
    assert isinstance(strategy, UpdateNormFilter)
    vectors = [[1, 1, 1], [2, 2, 2], [3, 3, 3], [4, 4, 4], [5, 5, 5], [500, 500, 500]]
    arrays, _ = strategy.aggregate_train(1, replies(vectors))  # no global: arrays are updates
    assert np.allclose(flat(arrays), [3, 3, 3])  # 500 filtered, then 1 and 5 trimmed


def test_the_registry_and_the_config_name_the_same_aggregators() -> None:
    assert set(AGGREGATOR_REGISTRY) == set(AGGREGATORS)
    with pytest.raises(ValueError, match="Unknown aggregator 'mean'; expected one of"):
        build_aggregator("mean")


def test_build_strategy_uses_the_configured_aggregator() -> None:
    config = RunConfig.from_mapping({"aggregator": "krum", "assumed-byzantine": 2,
                                     "min-available-nodes": 7})
    strategy = build_strategy(config)
    while not isinstance(strategy, UpdateKrum):  # defenses may wrap it
        strategy = strategy.strategy  # type: ignore[attr-defined]
    assert strategy.num_malicious_nodes == 2


@pytest.mark.parametrize("settings,fragment", [
    ({"aggregator": "krum", "assumed-byzantine": 2, "min-available-nodes": 6},
     "aggregator: 'krum' with assumed-byzantine=2 needs at least 7 nodes per round, but "
     "min-available-nodes=6"),
    ({"aggregator": "multikrum", "assumed-byzantine": 1, "min-available-nodes": 4},
     "needs at least 5 nodes"),
    ({"aggregator": "bulyan", "assumed-byzantine": 2, "min-available-nodes": 10},
     "aggregator: 'bulyan' with assumed-byzantine=2 needs at least 11 nodes"),
    ({"aggregator": "median", "assumed-byzantine": 3, "min-available-nodes": 6},
     "needs at least 7 nodes"),
    ({"aggregator": "krum"}, "needs at least 3 nodes per round, but min-available-nodes=2"),
    ({"aggregator": "trimmed-mean", "assumed-byzantine": 2, "min-available-nodes": 10,
      "trimmed-beta": 0.1}, "trimmed-beta: 0.1 trims 1 of 10 updates per side, fewer than "
                            "assumed-byzantine=2; raise trimmed-beta to at least 0.2"),
    ({"trimmed-beta": 0.5}, "trimmed-beta: expected a number in [0, 0.5)"),
    ({"aggregator": "multikrum", "assumed-byzantine": 1, "min-available-nodes": 5,
      "multikrum-select": 5}, "multikrum-select: 5 exceeds"),
    ({"aggregator": "mean"}, "aggregator: unknown value 'mean'; expected one of fedavg, median"),
    ({"byzantine-attack": "backdoor"}, "byzantine-attack: unknown value 'backdoor'"),
    ({"assumed-byzantine": -1}, "assumed-byzantine: expected an integer >= 0"),
    ({"norm-filter": 0.5}, "norm-filter: expected 0 (off) or a factor >= 1"),
    ({"byzantine-scale": -1.0}, "byzantine-scale: expected a number >= 0"),
])
def test_settings_that_cannot_work_stop_before_the_run(settings: dict[str, Any],
                                                        fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig.from_mapping(settings)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_feasible_settings_pass() -> None:
    RunConfig.from_mapping({"aggregator": "bulyan", "assumed-byzantine": 2, "min-available-nodes": 11})
    RunConfig.from_mapping({"aggregator": "trimmed-mean", "assumed-byzantine": 2,
                            "min-available-nodes": 10, "trimmed-beta": 0.2})
