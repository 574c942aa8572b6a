"""Reply validation: each kind of bad reply is caught, the aggregate of the rest is exactly the
inner strategy's, and the wrapper composes (generators in, in-place inner strategies)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg, FedTrimmedAvg

from strategies.validation import ArraySpec, ValidatingStrategy, check_arrays, norm_outliers
from fedsnn.tools.local_grid import server_identity

SPEC = {"w": ArraySpec((2, 3), "f"), "steps": ArraySpec((), "i")}
GOOD = {"w": np.zeros((2, 3), np.float32), "steps": np.array(3, np.int64)}


@pytest.mark.parametrize("change,kind", [
    ({"w": np.full((2, 3), np.nan, np.float32)}, "non-finite"),
    ({"w": np.array([[0, 0, np.inf]] * 2, np.float64)}, "non-finite"),
    ({"w": np.zeros((3, 2), np.float32)}, "shape"),
    ({"w": np.zeros((2, 3), np.int32)}, "dtype"),
    ({"steps": np.array(3.5)}, "dtype"),
    ({"extra": np.zeros(1, np.float32)}, "extra-arrays"),
])
def test_check_arrays_names_the_problem(change: dict, kind: str) -> None:
    problem = check_arrays(GOOD | change, SPEC)
    assert problem is not None and problem[0] == kind and "\n" not in problem[1]


def test_check_arrays_accepts_a_well_formed_reply_and_catches_a_missing_array() -> None:
    assert check_arrays(GOOD, SPEC) is None
    assert check_arrays({"w": GOOD["w"].astype(np.float64), "steps": GOOD["steps"]}, SPEC) is None
    assert check_arrays({"w": GOOD["w"]}, SPEC) == ("missing-arrays", "missing arrays ['steps']")


def test_norm_outliers_compare_each_norm_with_the_median_of_the_others() -> None:
    assert norm_outliers([1.0, 1.5, 0.8, 200.0], factor=10) == [False, False, False, True]
    assert norm_outliers([1.0, 200.0], factor=10) == [False, True]
    assert norm_outliers([5.0], factor=10) == [False]
    assert norm_outliers([1.0, 200.0], factor=0) == [False, False]


def honest_metrics(num_examples: float = 10) -> dict:
    """The metrics an honest train reply carries (fedsnn.core.protocol, no defense)."""
    return {"num-examples": num_examples, "train-loss": 0.5, "local-steps": 3,
            "partition-id": 0, "firewall": 0, "firewall-reason": 0}


def reply(node: int, weights: np.ndarray, num_examples: float = 10,
          metrics: dict | None = None, **arrays: np.ndarray) -> Message:
    content = RecordDict({
        "arrays": ArrayRecord({"w": Array(weights), **{k: Array(v) for k, v in arrays.items()}}),
        "metrics": MetricRecord(honest_metrics(num_examples) if metrics is None else metrics)})
    message = Message(content, dst_node_id=0, message_type="train")
    message.metadata.__dict__["_src_node_id"] = node
    return message


@pytest.fixture(autouse=True)
def identity() -> Iterator[None]:
    with server_identity():
        yield


def replies() -> list[Message]:
    rng = np.random.default_rng(0)
    good = [reply(i, rng.normal(size=4).astype(np.float32)) for i in range(1, 5)]
    bad = [reply(5, np.array([np.nan, 0, 0, 0], np.float32)),
           reply(6, np.zeros(5, np.float32)),
           reply(7, np.zeros(4, np.float32), extra=np.zeros(1)),
           reply(8, np.full(4, 1e6, np.float32)),
           reply(9, np.zeros(4, np.float32), num_examples=float("nan"))]
    return good + bad


def aggregate(strategy: ValidatingStrategy | FedAvg, messages: list[Message]) -> np.ndarray:
    arrays, _ = strategy.aggregate_train(1, (m for m in messages))  # a generator, as Flower may pass
    return arrays["w"].numpy()


def test_the_aggregate_equals_the_inner_strategy_on_the_valid_replies_alone() -> None:
    messages = replies()
    strategy = ValidatingStrategy(FedAvg(), norm_factor=10)
    reference = aggregate(FedAvg(), replies()[:4])
    assert np.allclose(aggregate(strategy, messages), reference)
    arrays, metrics = strategy.aggregate_train(1, iter(replies()))
    assert metrics["rejected-replies"] == 5
    assert sorted(metrics["rejected-node-ids"]) == [5, 6, 7, 8, 9]
    assert (metrics["rejected-non-finite"], metrics["rejected-shape"], metrics["rejected-norm"],
            metrics["rejected-extra-arrays"], metrics["rejected-malformed"]) == (1, 1, 1, 1, 1)
    assert {r.node_id: r.kind for r in strategy.rejections[1]}[8] == "norm"


def test_it_inspects_replies_before_an_inner_strategy_that_changes_them_in_place() -> None:
    strategy = ValidatingStrategy(FedTrimmedAvg(beta=0.2), norm_factor=10)
    arrays, metrics = strategy.aggregate_train(1, iter(replies()))
    assert np.isfinite(arrays["w"].numpy()).all()
    assert metrics["rejected-replies"] == 5


def test_all_replies_rejected_gives_no_aggregate_but_counts() -> None:
    strategy = ValidatingStrategy(FedAvg())
    arrays, metrics = strategy.aggregate_train(1, replies()[4:5])
    assert arrays is None and metrics["rejected-replies"] == 1


def test_the_norm_factor_is_checked() -> None:
    with pytest.raises(ValueError, match="norm_factor"):
        ValidatingStrategy(FedAvg(), norm_factor=0.5)


def evaluate_reply(node: int, **change: object) -> Message:
    metrics = {"num-examples": 5, "eval-loss": 0.3, "eval-acc": 0.5, "partition-id": node} | change
    message = Message(RecordDict({"metrics": MetricRecord(metrics)}), dst_node_id=0,
                      message_type="evaluate")
    message.metadata.__dict__["_src_node_id"] = node
    return message


ODD_REPLIES = {
    "an undeclared key": honest_metrics() | {"my-key": 1.0},
    "a missing required key": {k: v for k, v in honest_metrics().items() if k != "local-steps"},
    "a declared key the round did not ask for": honest_metrics() | {"dp-weight": 1.0},
    "a list where a number is declared": honest_metrics() | {"train-loss": [0.5, 0.1]},
}


@pytest.mark.parametrize("odd", sorted(ODD_REPLIES))
@pytest.mark.parametrize("honest_first", [True, False])
@pytest.mark.parametrize("config_known", [True, False])
def test_with_two_nodes_the_honest_reply_is_kept_in_every_ordering(odd: str, honest_first: bool,
                                                                   config_known: bool) -> None:
    honest = reply(1, np.ones(4, np.float32))
    other = reply(2, np.full(4, 2.0, np.float32), metrics=ODD_REPLIES[odd])
    strategy = ValidatingStrategy(FedAvg())
    if config_known:  # what configure_train records in a real round (no defense)
        strategy.sent_config["train"] = {"lr": 0.01, "server-round": 1}
    arrays, metrics = strategy.aggregate_train(
        1, [honest, other] if honest_first else [other, honest])
    assert np.allclose(arrays["w"].numpy(), 1.0)
    assert metrics["rejected-node-ids"] == [2]


def test_a_declared_optional_key_is_expected_when_the_round_config_asks_for_it() -> None:
    strategy = ValidatingStrategy(FedAvg())
    strategy.sent_config["train"] = {"central-dp": 1, "central-dp-adaptive": 0}
    with_weight = reply(1, np.ones(4, np.float32), metrics=honest_metrics() | {"dp-weight": 1.0})
    without = reply(2, np.full(4, 2.0, np.float32))
    arrays, metrics = strategy.aggregate_train(1, [without, with_weight])
    assert np.allclose(arrays["w"].numpy(), 1.0) and metrics["rejected-node-ids"] == [2]


def test_a_claim_of_1e12_examples_is_capped_and_no_longer_takes_over_fedavg() -> None:
    honest = [reply(1, np.full(4, 0.5, np.float32), num_examples=576),
              reply(2, np.full(4, -0.5, np.float32), num_examples=576)]
    attacker = reply(3, np.full(4, 1.0, np.float32), num_examples=10**12)
    uncapped, _ = ValidatingStrategy(FedAvg()).aggregate_train(
        1, honest + [reply(3, np.full(4, 1.0, np.float32), num_examples=10**12)])
    assert np.allclose(uncapped["w"].numpy(), 1.0)  # today's behaviour without a cap: taken over
    strategy = ValidatingStrategy(FedAvg(), max_examples=1151)  # digits' train split, 80 %
    arrays, metrics = strategy.aggregate_train(1, honest + [attacker])
    assert np.allclose(arrays["w"].numpy(), 1151 / (1151 + 2 * 576))
    assert metrics["capped-num-examples"] == 1


def test_in_gradient_mode_evaluate_replies_keep_their_test_split_size() -> None:
    from fedsnn.core.config import RunConfig
    from strategies.validation import example_cap

    config = RunConfig(update_mode="gradient", batch_size=1)
    assert example_cap(config, 1437) == 1  # a FedSGD reply is one batch
    cap = example_cap(config, 1437, stage="evaluate")
    assert cap > 143  # a node evaluates on its whole local test split
    strategy = ValidatingStrategy(FedAvg(), max_examples=1, max_evaluate_examples=cap)
    replies = [evaluate_reply(node, **{"num-examples": 143}) for node in (1, 2)]
    strategy.aggregate_evaluate(1, replies)
    assert [next(iter(m.content.metric_records.values()))["num-examples"] for m in replies] == [143, 143]


def test_an_error_reply_passes_the_example_cap_untouched() -> None:
    from flwr.app import Error

    sent = Message(RecordDict(), dst_node_id=3, message_type="train")
    # what Flower hands over for a node that vanished mid-round: an error reply, no content
    failed = Message(Error(code=0, reason="node killed mid-round"), reply_to=sent)
    strategy = ValidatingStrategy(FedAvg(), max_examples=1151, max_evaluate_examples=1151)
    arrays, _ = strategy.aggregate_train(1, [reply(1, np.full(4, 0.5, np.float32)), failed])
    assert np.allclose(arrays["w"].numpy(), 0.5)
    strategy.aggregate_evaluate(1, [evaluate_reply(1), failed])


def test_an_evaluate_reply_with_an_implausible_accuracy_is_rejected_with_a_log_line(
        caplog: pytest.LogCaptureFixture) -> None:
    strategy = ValidatingStrategy(FedAvg())
    with caplog.at_level("WARNING", logger="flwr"):
        metrics = strategy.aggregate_evaluate(1, [evaluate_reply(1),
                                                 evaluate_reply(2, **{"eval-acc": 1e9})])
    assert metrics["eval-acc"] == pytest.approx(0.5)
    assert [r.node_id for r in strategy.rejections[1]] == [2]
    assert "eval-acc" in caplog.text and "node 2" in caplog.text


def test_a_nan_metric_rejects_the_reply_like_a_list_value_and_is_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    """Issue 28: a NaN metric used to keep the reply (only logged, not in results.json) while a
    list value rejected it; now both are counted rejections, in train and evaluate replies."""
    from strategies.stack import build_strategy
    from fedsnn.core.config import RunConfig

    strategy = ValidatingStrategy(build_strategy(RunConfig()))
    replies = [reply(1, np.ones(4, np.float32)),
               reply(2, np.ones(4, np.float32), metrics=honest_metrics() | {"train-loss": np.nan}),
               reply(3, np.ones(4, np.float32), metrics=honest_metrics() | {"train-loss": [0.5]})]
    with caplog.at_level("WARNING", logger="flwr"):
        arrays, metrics = strategy.aggregate_train(1, replies)
        evaluated = strategy.aggregate_evaluate(1, [evaluate_reply(1),
                                                    evaluate_reply(2, **{"eval-loss": np.nan})])
    assert arrays is not None and metrics["train-loss"] == pytest.approx(0.5)
    assert metrics["rejected-node-ids"] == [2, 3] and metrics["rejected-metric-value"] == 2
    assert evaluated["rejected-node-ids"] == [2] and evaluated["eval-acc"] == pytest.approx(0.5)
    assert "'train-loss' is NaN" in caplog.text and "'eval-loss' is NaN" in caplog.text


def test_node_text_is_cut_before_it_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 28: a 100 kB metric key was written into the log in full."""
    key = "k" * 100_000
    with caplog.at_level("WARNING", logger="flwr"):
        _, metrics = ValidatingStrategy(FedAvg()).aggregate_train(
            1, [reply(1, np.ones(4, np.float32)),
                reply(2, np.ones(4, np.float32), metrics=honest_metrics() | {key: 1.0})])
    assert metrics["rejected-metric-keys"] == 1
    assert len(caplog.text) < 2_000 and "more characters)" in caplog.text


@pytest.mark.parametrize("stage", ["train", "evaluate"])
def test_one_node_claiming_1e12_examples_among_5_holds_at_most_a_quarter_of_the_weight(
        stage: str, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 28: capped at the whole train split, the liar held 56 % of a 5-node aggregate; capped
    at the largest of the 5 partitions it holds its fair fifth."""
    from fedsnn.core.config import RunConfig
    from fedsnn.core.data.partition import local_split_sizes
    from fedsnn.core.data.sources import load_dataset
    from strategies.validation import validating

    config = RunConfig()
    labels = load_dataset(config.dataset, config.image_size).train_y
    sizes = local_split_sizes(labels, 5, seed=config.seed)
    strategy = validating(FedAvg(), config, labels)
    with caplog.at_level("WARNING", logger="flwr"):
        if stage == "train":  # the honest nodes send ones, the liar zeros: 1 - mean = its weight
            honest = [reply(i, np.ones(4, np.float32), num_examples=sizes[i][0]) for i in range(4)]
            arrays, _ = strategy.aggregate_train(
                1, honest + [reply(4, np.zeros(4, np.float32), num_examples=10**12)])
            share = 1 - float(arrays["w"].numpy().mean())
        else:
            honest = [evaluate_reply(i, **{"num-examples": sizes[i][1], "eval-acc": 1.0})
                      for i in range(4)]
            metrics = strategy.aggregate_evaluate(
                1, honest + [evaluate_reply(4, **{"num-examples": 10**12, "eval-acc": 0.0})])
            share = 1 - metrics["eval-acc"]
    assert share <= 0.25
    assert f"caps the {stage} num-examples of node 4" in caplog.text
    assert "largest of 5 partitions" in caplog.text


def test_nodes_with_their_own_data_are_capped_at_twice_the_others_median_claim() -> None:
    from fedsnn.core.config import RunConfig
    from strategies.validation import validating

    strategy = validating(FedAvg(), RunConfig(audit_ground_truth="none"), [0] * 1437)
    honest = [reply(i, np.ones(4, np.float32), num_examples=100 + 20 * i) for i in range(4)]
    arrays, metrics = strategy.aggregate_train(
        1, honest + [reply(4, np.zeros(4, np.float32), num_examples=10**12)])
    # the others' median claim is 130: the liar keeps 260 of 520 + 260
    assert 1 - float(arrays["w"].numpy().mean()) == pytest.approx(260 / 780)
    assert metrics["capped-num-examples"] == 1
