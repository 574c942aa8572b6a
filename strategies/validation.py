"""Reject malformed client replies before they reach aggregation.

A reply is rejected when its arrays hold NaN/Inf, have the wrong shape or dtype kind, miss
arrays the global model has or carry extra ones, when its metrics break the protocol declared
in `fedsnn.core.protocol` (not one MetricRecord named `metrics`, no positive weight, a key that is
not declared, a key set other than the round's expected one, a value of the wrong type or out
of its plausible range, e.g. an `eval-acc` of 1e9), or when its update norm ‖w_i - w_global‖ is
far beyond the other replies' (more than `norm_factor` x their median). The expected key set
comes from the declarations and the config the round was sent with, never from a vote among
the replies, so with two nodes an odd reply cannot outvote the honest one.

A claimed `num-examples` above what the server knows a node can hold is capped to it, with a log
line naming the bound, in train and evaluate replies, so that one node cannot take over a weighted
mean by claiming 10^12: `max_examples` (declared or derived from the dataset), the largest
partition of a federation of this many nodes (`node_caps`, simulation), and `median_factor` x the
median claim of the other nodes (nodes with their own data, whose sizes the server cannot know).

Each rejection is logged with the node and the reason; the round aggregates the rest.
Counts go into the round's train metrics (`rejected-replies`, `rejected-<kind>`,
`rejected-node-ids`, `capped-num-examples`), which the ServerApp writes to results.json.

The wrapper inspects the replies *before* delegating (inner strategies such as FedTrimmedAvg,
Bulyan or server-side DP clipping change replies in place) and accepts a generator of replies.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from logging import WARNING

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedsnn.core.config import RunConfig
from fedsnn.core.data.partition import local_split_sizes
from fedsnn.core.privacy.clipping import update_norm
from fedsnn.core.protocol import (ARRAYS_RECORD, METRICS_RECORD, NUM_EXAMPLES_KEY, REPLY_METRICS,
                             MetricKey, expected_keys, required_keys)
from strategies.base import StrategyWrapper
from strategies.robust_updates import MalformedReply, reply_arrays

REJECTION_KINDS = ("malformed", "metric-keys", "metric-value", "missing-arrays", "extra-arrays",
                   "shape", "dtype", "non-finite", "norm")
KIND_NAMES = {"f": "a floating-point dtype", "i": "a signed integer dtype",
              "u": "an unsigned integer dtype", "b": "a boolean dtype"}


# Nodes with their own data: a claim is capped at this multiple of the other nodes' median claim
# (one liar among 5 then holds at most 2/6 of the weight; honest sizes may differ 2x).
OWN_DATA_MEDIAN_FACTOR = 2.0

# reject(message, kind, reason): records and logs one rejection
_Reject = Callable[[Message, str, str], None]


@dataclass(frozen=True)
class Rejection:
    """Why one reply was left out of a round's aggregation."""

    node_id: int
    kind: str  # one of REJECTION_KINDS
    reason: str


@dataclass(frozen=True)
class ArraySpec:
    """The shape and dtype kind ('f' float, 'i' signed int, ...) an array must have."""

    shape: tuple[int, ...]
    kind: str


def array_specs(record: ArrayRecord) -> dict[str, ArraySpec]:
    """The expected layout of replies: one `ArraySpec` per array of the global model."""
    return {key: ArraySpec(tuple(array.shape), np.dtype(array.dtype).kind)
            for key, array in record.items()}


def check_arrays(arrays: Mapping[str, np.ndarray], expected: Mapping[str, ArraySpec]
                 ) -> tuple[str, str] | None:
    """(kind, reason) for arrays that do not fit `expected`; None when they fit.

    Example:
        >>> spec = {"w": ArraySpec((2,), "f")}
        >>> check_arrays({"w": np.array([1.0, np.nan])}, spec)
        ('non-finite', "array 'w' holds 1 NaN/Inf value(s)")
    """
    missing = sorted(set(expected) - set(arrays))
    if missing:
        return "missing-arrays", f"missing arrays {missing}"
    extra = sorted(set(arrays) - set(expected))
    if extra:
        return "extra-arrays", f"unexpected arrays {extra}"
    for key, spec in expected.items():
        array = arrays[key]
        if tuple(array.shape) != spec.shape:
            return "shape", f"array {key!r} has shape {tuple(array.shape)}, expected {spec.shape}"
        if array.dtype.kind != spec.kind:
            expected_kind = KIND_NAMES.get(spec.kind, repr(spec.kind))
            return "dtype", f"array {key!r} has dtype {array.dtype}, expected {expected_kind}"
        if spec.kind in "fc" and not np.isfinite(array).all():
            count = int(array.size - np.isfinite(array).sum())
            return "non-finite", f"array {key!r} holds {count} NaN/Inf value(s)"
    return None


def check_metrics(content: RecordDict, weighted_by_key: str,
                  declared: Mapping[str, MetricKey] | None = None) -> tuple[str, str] | None:
    """(kind, reason) when the reply's metrics cannot be aggregated or break the declared
    protocol (an undeclared key, a value of the wrong type or out of range); None when fine.

    Example:
        >>> from fedsnn.core.protocol import EVALUATE_METRICS
        >>> check_metrics(RecordDict({"metrics": MetricRecord({"num-examples": 5,
        ...     "eval-acc": 1e9})}), "num-examples", EVALUATE_METRICS)
        ('metric-value', "metric 'eval-acc' is 1e+09; expected a value in [0, 1]")
    """
    if len(content.metric_records) != 1:
        return "malformed", f"expected one MetricRecord, got {len(content.metric_records)}"
    (name, metrics), = content.metric_records.items()
    if name != METRICS_RECORD:
        return "malformed", f"the MetricRecord is named {name!r}; expected {METRICS_RECORD!r}"
    weight = metrics.get(weighted_by_key)
    if isinstance(weight, list) or weight is None:
        return "malformed", f"metric {weighted_by_key!r} is missing or not a number"
    if not (np.isfinite(weight) and weight > 0):
        return "malformed", f"metric {weighted_by_key!r} is {weight}; expected a positive number"
    if declared is None:
        return None
    undeclared = sorted(set(metrics) - set(declared))
    if undeclared:
        return "metric-keys", (f"undeclared metric keys {undeclared} (fedsnn.core.protocol declares "
                               f"{sorted(declared)})")
    for key, value in metrics.items():
        problem = declared[key].problem(value)
        if problem is not None:
            return "metric-value", problem
    return None


def clip_text(text: str, limit: int = 300) -> str:
    """`text` cut to `limit` characters, saying how much was cut: what a node sends (metric keys,
    values) reaches the log and results.json through rejection reasons.

    Example:
        >>> clip_text("k" * 1000, limit=20)
        'kkkkkkkkkkkkkkkkkkkk... (980 more characters)'
    """
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


def norm_outliers(norms: list[float], factor: float) -> list[bool]:
    """True where a norm exceeds `factor` x the median of the *other* norms (leave-one-out, so
    one huge norm cannot raise its own bar). With fewer than two norms nothing is an outlier.

    Example:
        >>> norm_outliers([1.0, 1.2, 50.0], factor=10.0)
        [False, False, True]
    """
    if factor <= 0 or len(norms) < 2:
        return [False] * len(norms)
    flags = []
    for i, norm in enumerate(norms):
        others = norms[:i] + norms[i + 1:]
        flags.append(norm > factor * max(float(np.median(others)), 1e-12))
    return flags


def example_cap(config: RunConfig, train_size: int, *, stage: str = "train") -> int:
    """The most examples a node can honestly claim: `max-num-examples` when set; else, for a
    training reply in gradient mode, `batch-size` (one batch); else the local-train share of the
    run dataset's whole train split (no partition holds more, and a node's local test split is
    smaller still; nodes with their own, larger data need `max-num-examples`)."""
    if config.max_num_examples:
        return config.max_num_examples
    if config.update_mode == "gradient" and stage == "train":
        return config.batch_size
    return max(1, train_size - int(train_size * config.local_test_fraction))


def partition_caps(config: RunConfig, labels: Sequence[int]) -> Callable[[int], tuple[int, int]]:
    """For a federation of n nodes over the run dataset's partitions (a simulation): the largest
    (local train, local test) split any of the n partitions has; (0, 0), no bound, when the
    partitioner cannot split the data n ways. A node's claimed partition id is not trusted."""

    @lru_cache(maxsize=4)
    def caps(num_nodes: int) -> tuple[int, int]:
        try:
            sizes = local_split_sizes(torch.as_tensor(labels), num_nodes,
                                      kind=config.partitioner, alpha=config.dirichlet_alpha,
                                      seed=config.seed,
                                      local_test_fraction=config.local_test_fraction)
        except (IndexError, ValueError):  # more partitions than samples
            return 0, 0
        return max(1, max(t for t, _ in sizes)), max(1, max(e for _, e in sizes))

    return caps


def leave_one_out_medians(values: list[float]) -> list[float]:
    """For each value, the median of the others (inf when there are none).

    Example:
        >>> leave_one_out_medians([10.0, 12.0, 1e12])
        [500000000006.0, 500000000005.0, 11.0]
    """
    return [float(np.median(values[:i] + values[i + 1:])) if len(values) > 1 else float("inf")
            for i in range(len(values))]


class ValidatingStrategy(StrategyWrapper):
    """Screen train (and evaluate) replies, log and count the rejected ones, delegate the rest.

    Args:
        strategy: the strategy that aggregates the valid replies.
        norm_factor: reject an update whose norm exceeds this multiple of the median of the
            others' norms; 0 turns the norm check off.
        weighted_by_key: the metric the inner strategy weights by (must be present and > 0).
        max_examples: cap a training reply's `num-examples` to this (0: no cap).
        max_evaluate_examples: the same for evaluate replies (0: no cap); in gradient mode a
            node evaluates on its whole local test split, not on one batch.
        node_caps: number of nodes -> (train, evaluate) cap, e.g. `partition_caps` in a
            simulation; the nodes are counted when a round is configured.
        median_factor: cap each claim at this multiple of the median claim of the other
            replies (0: off), for nodes whose data sizes the server cannot know.

    Example:
        >>> from flwr.serverapp.strategy import FedAvg
        >>> strategy = ValidatingStrategy(FedAvg(), norm_factor=10.0, max_examples=1151)
    """

    def __init__(self, strategy: Strategy, *, norm_factor: float = 100.0,
                 weighted_by_key: str = NUM_EXAMPLES_KEY, max_examples: int = 0,
                 max_evaluate_examples: int = 0,
                 node_caps: Callable[[int], tuple[int, int]] | None = None,
                 median_factor: float = 0.0) -> None:
        if norm_factor != 0 and not norm_factor > 1:
            raise ValueError(f"Expected argument `norm_factor` to be 0 or > 1 but got {norm_factor}")
        if max_examples < 0 or max_evaluate_examples < 0:
            raise ValueError("Expected arguments `max_examples` and `max_evaluate_examples` to be "
                             f">= 0 but got {max_examples} and {max_evaluate_examples}")
        super().__init__(strategy)
        self.norm_factor = norm_factor
        self.weighted_by_key = weighted_by_key
        self.max_examples = max_examples
        self.max_evaluate_examples = max_evaluate_examples
        self.node_caps = node_caps
        self.median_factor = median_factor
        self.num_nodes = 0  # the nodes connected when the round was configured (0: not known)
        self.rejections: dict[int, list[Rejection]] = {}
        # the config each stage was sent with: it fixes the metric keys the replies must carry
        self.sent_config: dict[str, dict[str, object] | None] = {"train": None, "evaluate": None}

    def describe(self) -> str:
        cap = f"; num-examples <= {self.max_examples}" if self.max_examples else ""
        return (f"Reply validation: finite, shapes, dtypes, declared metric keys and ranges; "
                f"norm <= {self.norm_factor or 'inf'} x median{cap}")

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Delegate; remember the train config the messages carry (after every wrapper's flags)."""
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self.sent_config["train"] = _sent_config(messages, config)
        self.num_nodes = len(list(grid.get_node_ids()))
        return messages

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        """Delegate; remember the evaluate config the messages carry."""
        messages = list(super().configure_evaluate(server_round, arrays, config, grid))
        self.sent_config["evaluate"] = _sent_config(messages, config)
        self.num_nodes = len(list(grid.get_node_ids()))
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Reject bad replies (logged and counted), aggregate the others with the inner strategy."""
        replies = list(replies)
        rejected = self.screen(server_round, replies, stage="train")
        kept = [msg for msg in replies if id(msg) not in rejected]
        capped = self._cap_examples(server_round, kept, len(replies), stage="train")
        arrays, metrics = self.strategy.aggregate_train(server_round, kept)
        return arrays, _with_counts(metrics, rejected, capped)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        """Drop evaluate replies that break the protocol (e.g. an accuracy of 1e9), delegate
        the rest."""
        replies = list(replies)
        rejected = self.screen(server_round, replies, stage="evaluate")
        kept = [msg for msg in replies if id(msg) not in rejected]
        capped = self._cap_examples(server_round, kept, len(replies), stage="evaluate")
        return _with_counts(self.strategy.aggregate_evaluate(server_round, kept), rejected, capped)

    def screen(self, server_round: int, replies: list[Message], *, stage: str = "train"
               ) -> dict[int, Rejection]:
        """The rejected replies, keyed by `id(message)`; error replies pass through untouched.
        `stage` is "train" (arrays and updates are checked too) or "evaluate"."""
        contents = [msg for msg in replies if not msg.has_error()]
        rejected: dict[int, Rejection] = {}
        check_updates = stage == "train"

        def reject(msg: Message, kind: str, reason: str) -> None:
            rejection = Rejection(msg.metadata.src_node_id, kind, clip_text(reason))
            rejected[id(msg)] = rejection
            self.rejections.setdefault(server_round, []).append(rejection)
            log(WARNING, "validation: round %d rejects the %s reply of node %d (%s): %s",
                server_round, stage, rejection.node_id, kind, rejection.reason)

        declared = REPLY_METRICS[stage]
        expected = self._expected(contents) if check_updates else {}
        arrays_of: dict[int, dict[str, np.ndarray]] = {}
        for msg in contents:
            problem = check_metrics(msg.content, self.weighted_by_key, declared)
            if problem is None and check_updates:
                problem, arrays = _reply_arrays(msg.content)
                if problem is None:
                    problem = check_arrays(arrays, expected)
                    arrays_of[id(msg)] = arrays
            if problem is not None:
                reject(msg, *problem)
        self._reject_unexpected_keys([m for m in contents if id(m) not in rejected],
                                     declared, expected_keys(declared, self.sent_config[stage]),
                                     reject)
        if check_updates:
            self._reject_norm_outliers([m for m in contents if id(m) not in rejected],
                                       arrays_of, reject)
        return rejected

    def _expected(self, contents: list[Message]) -> dict[str, ArraySpec]:
        """The global model's layout; without one (a unit test calling aggregate_train only),
        the layout most replies share."""
        if self.round_arrays is not None:
            return array_specs(self.round_arrays)
        layouts: Counter[tuple[tuple[str, tuple[int, ...], str], ...]] = Counter()
        for msg in contents:
            problem, arrays = _reply_arrays(msg.content)
            if problem is None:
                layouts[tuple((k, tuple(a.shape), a.dtype.kind) for k, a in arrays.items())] += 1
        if not layouts:
            return {}
        return {k: ArraySpec(shape, kind) for k, shape, kind in layouts.most_common(1)[0][0]}

    @staticmethod
    def _reject_unexpected_keys(contents: list[Message], declared: Mapping[str, MetricKey],
                                expected: frozenset[str] | None, reject: _Reject) -> None:
        """Flower aggregates a round only if all MetricRecords share their keys. A reply whose
        keys differ from the round's expected set (declared keys + the config the round was
        sent with) is rejected, whatever the other replies carry. Without a known config (a
        unit test calling aggregate_train only): the required keys plus the optional keys that
        every reply carries."""
        keysets = {id(m): frozenset(_metrics(m).keys()) for m in contents}
        if expected is None:
            shared = frozenset.intersection(*keysets.values()) if keysets else frozenset()
            expected = required_keys(declared) | shared
        for msg in contents:
            keys = keysets[id(msg)]
            if keys != expected:
                reject(msg, "metric-keys", f"metric keys differ from the round's declared set: "
                                           f"unexpected {sorted(keys - expected)}, "
                                           f"missing {sorted(expected - keys)}")

    def _cap_examples(self, server_round: int, kept: list[Message], num_replies: int, *,
                      stage: str) -> int:
        """Cap each kept reply's `num-examples` (in place, logged with the bound that applied);
        return how many were capped."""
        bounds: list[tuple[float, str]] = []
        static = self.max_examples if stage == "train" else self.max_evaluate_examples
        if static:
            bounds.append((static, "max-num-examples, or the dataset's train split"))
        num_nodes = self.num_nodes or num_replies
        if self.node_caps is not None:
            cap = self.node_caps(num_nodes)[0 if stage == "train" else 1]
            if cap:
                bounds.append((cap, f"the largest of {num_nodes} partitions"))
        answered = [msg for msg in kept if not msg.has_error()]  # failed nodes have no content
        claims = [_metrics(msg).get(NUM_EXAMPLES_KEY) for msg in answered]
        claims = [float(c) if isinstance(c, (int, float)) else 0.0 for c in claims]
        static_cap = min((b for b, _ in bounds), default=float("inf"))
        medians = leave_one_out_medians([min(c, static_cap) for c in claims])
        capped = 0
        for msg, claimed, median in zip(answered, claims, medians, strict=True):
            node_bounds = list(bounds)
            if self.median_factor and np.isfinite(median):
                node_bounds.append((max(1.0, float(np.ceil(self.median_factor * median))),
                                    f"{self.median_factor:g} x the median claim of the others"))
            if not node_bounds:
                continue
            cap, why = min(node_bounds)
            if claimed > cap:
                _metrics(msg)[NUM_EXAMPLES_KEY] = int(cap)
                capped += 1
                log(WARNING, "validation: round %d caps the %s num-examples of node %d from %g to "
                    "%d (more than a node can hold: %s)", server_round, stage,
                    msg.metadata.src_node_id, claimed, cap, why)
        return capped

    def _reject_norm_outliers(self, contents: list[Message],
                              arrays_of: dict[int, dict[str, np.ndarray]], reject: _Reject) -> None:
        reference = ({k: v.numpy() for k, v in self.round_arrays.items()}
                     if self.round_arrays is not None else None)
        norms = [_update_norm(arrays_of[id(msg)], reference) for msg in contents]
        for msg, norm, outlier in zip(contents, norms, norm_outliers(norms, self.norm_factor),
                                      strict=True):
            if outlier:
                others = [n for m, n in zip(contents, norms, strict=True) if m is not msg]
                reject(msg, "norm", f"update norm {norm:.3g} > {self.norm_factor:g} x median "
                                    f"{float(np.median(others)):.3g} of the other replies")


def validating(strategy: Strategy, config: RunConfig, train_labels: Sequence[int]
               ) -> ValidatingStrategy:
    """`strategy` behind the run's reply validation and `num-examples` caps: the dataset's
    bounds, the largest partition when nodes hold partitions of the run dataset
    (audit-ground-truth=partitions), else `OWN_DATA_MEDIAN_FACTOR` x the others' median claim."""
    own_data = config.audit_ground_truth == "none"
    return ValidatingStrategy(
        strategy, norm_factor=config.reject_norm_factor,
        max_examples=example_cap(config, len(train_labels)),
        max_evaluate_examples=example_cap(config, len(train_labels), stage="evaluate"),
        node_caps=None if own_data or config.max_num_examples else partition_caps(config,
                                                                                  train_labels),
        median_factor=OWN_DATA_MEDIAN_FACTOR if own_data else 0.0)


def _with_counts(metrics: MetricRecord | None, rejected: Mapping[int, Rejection], capped: int
                 ) -> MetricRecord | None:
    """The aggregate's metrics plus what validation did (they end up in results.json)."""
    if not (rejected or capped):
        return metrics
    metrics = MetricRecord() if metrics is None else metrics
    if capped:
        metrics["capped-num-examples"] = capped
    if rejected:
        metrics["rejected-replies"] = len(rejected)
        metrics["rejected-node-ids"] = [r.node_id for r in rejected.values()]
        for kind, count in Counter(r.kind for r in rejected.values()).items():
            metrics[f"rejected-{kind}"] = count
    return metrics


def _metrics(msg: Message) -> MetricRecord:
    return next(iter(msg.content.metric_records.values()))


def _sent_config(messages: list[Message], config: ConfigRecord) -> dict[str, object]:
    """The config the messages carry (the wrappers add their flags on the way in)."""
    for msg in messages:
        records = list(msg.content.config_records.values())
        if records:
            return dict(records[0])
    return dict(config)


def _reply_arrays(content: RecordDict) -> tuple[tuple[str, str] | None, dict[str, np.ndarray]]:
    """The reply's one ArrayRecord (`reply_arrays`, named `ARRAYS_RECORD`) as numpy arrays, or
    (kind, reason) when it has none/several, another name, or its bytes do not decode."""
    try:
        record = reply_arrays(content)
    except MalformedReply as error:
        return ("malformed", str(error)), {}
    (name,) = content.array_records.keys()
    if name != ARRAYS_RECORD:
        return ("malformed", f"the ArrayRecord is named {name!r}; expected {ARRAYS_RECORD!r}"), {}
    try:
        return None, {key: np.asarray(array.numpy()) for key, array in record.items()}
    except Exception as error:  # noqa: BLE001 - any undecodable payload is one rejection
        return ("malformed", f"arrays do not decode ({type(error).__name__}: {error})"), {}


def _update_norm(arrays: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray] | None
                 ) -> float:
    """‖arrays - reference‖₂ over the floating-point arrays (‖arrays‖ without a reference)."""
    base = [reference[key] if reference is not None else np.zeros_like(array)
            for key, array in arrays.items()]
    return update_norm(list(arrays.values()), base)
