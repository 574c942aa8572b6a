"""Reject malformed client replies before they reach aggregation.

A reply is rejected when its arrays hold NaN/Inf, have the wrong shape or dtype kind, miss
arrays the global model has or carry extra ones, when its metrics cannot be aggregated (no
single MetricRecord with a positive `num-examples`, or keys the other replies lack), or when its
update norm ‖w_i - w_global‖ is far beyond the other replies' (more than `norm_factor` x their
median). Each rejection is logged with the node and the reason; the round aggregates the rest.
Counts go into the round's train metrics (`rejected-replies`, `rejected-<kind>`,
`rejected-node-ids`), which the ServerApp writes to results.json.

The wrapper inspects the replies *before* delegating (inner strategies such as FedTrimmedAvg,
Bulyan or server-side DP clipping change replies in place) and accepts a generator of replies.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from logging import WARNING

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp.strategy import Strategy

from fedsnn.privacy.clipping import update_norm
from strategies.base import StrategyWrapper
from strategies.robust_updates import MalformedReply, reply_arrays

REJECTION_KINDS = ("malformed", "missing-arrays", "extra-arrays", "shape", "dtype", "non-finite",
                   "norm")
KIND_NAMES = {"f": "a floating-point dtype", "i": "a signed integer dtype",
              "u": "an unsigned integer dtype", "b": "a boolean dtype"}


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


def check_metrics(content: RecordDict, weighted_by_key: str) -> tuple[str, str] | None:
    """(kind, reason) when the reply's metrics cannot be aggregated; None when they can."""
    if len(content.metric_records) != 1:
        return "malformed", f"expected one MetricRecord, got {len(content.metric_records)}"
    metrics = next(iter(content.metric_records.values()))
    weight = metrics.get(weighted_by_key)
    if isinstance(weight, list) or weight is None:
        return "malformed", f"metric {weighted_by_key!r} is missing or not a number"
    if not (np.isfinite(weight) and weight > 0):
        return "malformed", f"metric {weighted_by_key!r} is {weight}; expected a positive number"
    return None


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


class ValidatingStrategy(StrategyWrapper):
    """Screen train (and evaluate) replies, log and count the rejected ones, delegate the rest.

    Args:
        strategy: the strategy that aggregates the valid replies.
        norm_factor: reject an update whose norm exceeds this multiple of the median of the
            others' norms; 0 turns the norm check off.
        weighted_by_key: the metric the inner strategy weights by (must be present and > 0).

    Example:
        >>> from flwr.serverapp.strategy import FedAvg
        >>> strategy = ValidatingStrategy(FedAvg(), norm_factor=10.0)
    """

    def __init__(self, strategy: Strategy, *, norm_factor: float = 100.0,
                 weighted_by_key: str = "num-examples") -> None:
        if norm_factor != 0 and not norm_factor > 1:
            raise ValueError(f"Expected argument `norm_factor` to be 0 or > 1 but got {norm_factor}")
        super().__init__(strategy)
        self.norm_factor = norm_factor
        self.weighted_by_key = weighted_by_key
        self.rejections: dict[int, list[Rejection]] = {}

    def describe(self) -> str:
        return (f"Reply validation: finite, shapes, dtypes, keys; norm <= "
                f"{self.norm_factor or 'inf'} x median")

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Reject bad replies (logged and counted), aggregate the others with the inner strategy."""
        replies = list(replies)
        rejected = self.screen(server_round, replies, check_updates=True)
        kept = [msg for msg in replies if id(msg) not in rejected]
        arrays, metrics = self.strategy.aggregate_train(server_round, kept)
        if rejected:
            metrics = MetricRecord() if metrics is None else metrics
            kinds = Counter(r.kind for r in rejected.values())
            metrics["rejected-replies"] = len(rejected)
            metrics["rejected-node-ids"] = [r.node_id for r in rejected.values()]
            for kind, count in kinds.items():
                metrics[f"rejected-{kind}"] = count
        return arrays, metrics

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        """Drop evaluate replies whose metrics cannot be aggregated, delegate the rest."""
        replies = list(replies)
        rejected = self.screen(server_round, replies, check_updates=False)
        return self.strategy.aggregate_evaluate(
            server_round, [msg for msg in replies if id(msg) not in rejected])

    def screen(self, server_round: int, replies: list[Message], *, check_updates: bool
               ) -> dict[int, Rejection]:
        """The rejected replies, keyed by `id(message)`; error replies pass through untouched."""
        contents = [msg for msg in replies if not msg.has_error()]
        rejected: dict[int, Rejection] = {}

        def reject(msg: Message, kind: str, reason: str) -> None:
            rejection = Rejection(msg.metadata.src_node_id, kind, reason)
            rejected[id(msg)] = rejection
            self.rejections.setdefault(server_round, []).append(rejection)
            log(WARNING, "validation: round %d rejects the reply of node %d (%s): %s",
                server_round, rejection.node_id, kind, reason)

        expected = self._expected(contents) if check_updates else {}
        arrays_of: dict[int, dict[str, np.ndarray]] = {}
        for msg in contents:
            problem = check_metrics(msg.content, self.weighted_by_key)
            if problem is None and check_updates:
                problem, arrays = _reply_arrays(msg.content)
                if problem is None:
                    problem = check_arrays(arrays, expected)
                    arrays_of[id(msg)] = arrays
            if problem is not None:
                reject(msg, *problem)
        self._reject_odd_metric_keys([m for m in contents if id(m) not in rejected], reject)
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

    def _reject_odd_metric_keys(self, contents: list[Message], reject: _Reject) -> None:
        """Flower aggregates a round only if all MetricRecords share their keys: the replies
        whose keys differ from the most common set are rejected instead of the whole round."""
        keysets = {id(m): frozenset(next(iter(m.content.metric_records.values())).keys())
                   for m in contents}
        if len(set(keysets.values())) <= 1:
            return
        common = Counter(keysets.values()).most_common(1)[0][0]
        for msg in contents:
            keys = keysets[id(msg)]
            if keys != common:
                reject(msg, "malformed", f"metric keys differ from the other replies: "
                                         f"extra {sorted(keys - common)}, "
                                         f"missing {sorted(common - keys)}")

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


def _reply_arrays(content: RecordDict) -> tuple[tuple[str, str] | None, dict[str, np.ndarray]]:
    """The reply's one ArrayRecord (`reply_arrays`) as numpy arrays, or (kind, reason) when it
    has none/several or its bytes do not decode."""
    try:
        record = reply_arrays(content)
    except MalformedReply as error:
        return ("malformed", str(error)), {}
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
