"""The message protocol between the ServerApp and the ClientApp, declared in one place.

- Record names: a train reply holds one ArrayRecord `arrays` and one MetricRecord `metrics`; an
  evaluate reply holds `metrics` only.
- Train-config flags the defense wrappers add (beside the client-side defenses' settings,
  declared in `fedsnn.core.defense_config`).
- Every metric key a reply may carry (`TRAIN_METRICS`, `EVALUATE_METRICS`), with its type, the
  range of plausible values and its meaning. A key is in every reply of its kind, or, when it
  names a config key in `when`, only in the replies to a round whose config holds that key.

The server's reply validation (`strategies.validation`) checks replies against these
declarations: no key outside them, the round's expected set exactly, values of the declared type
and range. A NaN value breaks the protocol like any other bad value (the reply is rejected and
counted); an infinite one passes only where the key's range is open (an epsilon of inf: no
privacy) and is dropped from the averages with a log line (`strategies.aggregate_metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flwr.supercore.differential_privacy import KEY_NORM_BIT

from fedsnn.core.defense_config import DP_SGD_KEY, LOCAL_DP_KEY, SPIKE_DP_KEY

# -- record names ---------------------------------------------------------------------------
ARRAYS_RECORD = "arrays"
METRICS_RECORD = "metrics"
CONFIG_RECORD = "config"

# -- train-config flags without a run-config counterpart --------------------------------------
CENTRAL_DP_FLAG = "central-dp"           # 1: the client reports EQUAL_WEIGHT_KEY = 1
ADAPTIVE_FLAG = "central-dp-adaptive"    # 1: the client reports Flower's norm bit
# The weight FedAvg averages by under central DP: 1 in training replies (the update mean must be
# unweighted for the C/m sensitivity), the example count in evaluation replies (not a DP release).
EQUAL_WEIGHT_KEY = "dp-weight"
NUM_EXAMPLES_KEY = "num-examples"
# Set in every train and evaluate config by a client-side defense (local DP, DP-SGD, spike-DP):
# the node's replies then carry only `PROTECTED_REPLY_KEYS`.
CLIENT_DP_FLAG = "client-dp"
# Set in every train config by the ServerApp (issue 27): the folder under the run folder where a
# node without its own `privacy-ledger` keeps its ledger (`partition-<id>.json`), and 1 when that
# folder holds every ledger since round 1 (a fresh run, or a resume of a run that kept them).
NODE_LEDGER_DIR = "node-ledger-dir"
NODE_LEDGERS_COMPLETE = "node-ledgers-complete"

# The client's privacy firewall (`fedsnn.audit.firewall`): what leaves the node is its decision
# and the reason code, never its scores. An allowed or hardened reply carries both as metrics; a
# held update is an error reply with FIREWALL_HOLD_CODE and "firewall: <reason>" as its reason,
# so the server counts a failure, not data.
FIREWALL_KEY = "firewall"                # train metric: index into FIREWALL_DECISIONS
FIREWALL_REASON_KEY = "firewall-reason"  # train metric: index into FIREWALL_REASONS
FIREWALL_DECISIONS = ("off", "allowed", "hardened", "held")  # "off": off or report mode
FIREWALL_REASONS = (
    "none",             # off or report mode: the reply is what the client would send anyway
    "not-checked",      # a round between two checks (the policy's cadence)
    "not-attacked",     # the threat model grants no attack on this reply
    "no-evidence",      # the check ran and found no evidence beyond chance
    "inconclusive",     # the check did not finish (or had no power)
    "leak",             # the full attack beat its strongest null
    "fedsgd-batch-1",   # pre-check: a FedSGD step on one sample, without the node's own noise
    "label-from-bias",  # pre-check: the head's gradient gives the labels away exactly
    "spike-rate-map",   # pre-check: the spiking head's gradient gives the rate map away exactly
    "still-leaks",      # harden: the most noise the policy allows did not make the check clean
)
FIREWALL_HOLD_CODE = 1003  # the error code of a held update (1001: the node cannot take part;
                           # 1002: the round asks for less privacy than the node's policy allows)


def firewall_hold_reason(reason: str) -> str:
    """The error reason of a held update: only an allow-listed reason code.

    Raises:
        ValueError: `reason` is not in FIREWALL_REASONS.
    """
    if reason not in FIREWALL_REASONS:
        raise ValueError(f"Unknown firewall reason {reason!r}; expected one of {FIREWALL_REASONS}")
    return f"firewall: {reason}"


SCALAR_KINDS = ("int", "float")


@dataclass(frozen=True)
class MetricKey:
    """One metric a reply may carry.

    Attributes:
        name: the key in the reply's MetricRecord.
        kind: "int", "float" (an int is accepted too), "list[int]" or "list[float]".
        meaning: what the value is, one line.
        low, high: the plausible range of a finite value (inclusive); None: unbounded.
        when: "" (in every reply of its kind) or the train/evaluate-config key whose (truthy)
            presence makes the client send it.
        per_client: identifies a client or its samples; never averaged across replies.
        raw: computed on the client's raw data without noise (a DP-protected reply must not
            carry it unless the defense covers it).
        released: may leave a DP-protected client (`PROTECTED_REPLY_KEYS`): setup rather than
            data, a constant, post-processing of the privatized update, or a privacy figure
            (a function of public settings and release counts).
    """

    name: str
    kind: str
    meaning: str
    low: float | None = None
    high: float | None = None
    when: str = ""
    per_client: bool = False
    raw: bool = False
    released: bool = False

    def problem(self, value: Any) -> str | None:
        """Why `value` does not fit this key (wrong type, implausible); None when it fits.
        NaN never fits; an infinite value fits where the range is open on its side."""
        items = value if isinstance(value, list) else None
        if self.kind.startswith("list"):
            if items is None:
                return f"metric {self.name!r} is {_short(value)}; expected a {self.kind}"
            element = self.kind[5:-1]
            bad = next((v for v in items if not _is(v, element)), None)
            if bad is not None:
                return f"metric {self.name!r} holds {_short(bad)}; expected a {self.kind}"
            values = items
        else:
            if not _is(value, self.kind):
                return f"metric {self.name!r} is {_short(value)}; expected {self.kind}"
            values = [value]
        for v in values:
            if math.isnan(v):
                return f"metric {self.name!r} is NaN; expected a number"
            if (self.low is not None and v < self.low) or (self.high is not None and v > self.high):
                return (f"metric {self.name!r} is {v:.6g}; expected a value in "
                        f"[{_bound(self.low, '-inf')}, {_bound(self.high, 'inf')}]")
        return None


def _is(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int)
    return isinstance(value, (int, float))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _bound(value: float | None, unbounded: str) -> str:
    return unbounded if value is None else f"{value:g}"


def _declare(*keys: MetricKey) -> dict[str, MetricKey]:
    return {key.name: key for key in keys}


_COMMON = (
    # under a client-side defense a public figure from the node's n̂ (clients.privacy.
    # public_counts), never the data's own size: it must not tell add/remove neighbours apart
    MetricKey(NUM_EXAMPLES_KEY, "int", "samples the reply was computed on (FedAvg's weight)",
              low=1, raw=True, released=True),
    MetricKey("partition-id", "int", "the node's partition (-1: a node with its own data)",
              low=-1, per_client=True, released=True),
    MetricKey(EQUAL_WEIGHT_KEY, "float", "central DP's weight: 1 in training, the example "
              "count in evaluation", low=0, when=CENTRAL_DP_FLAG, released=True),
)

TRAIN_METRICS: dict[str, MetricKey] = _declare(
    *_COMMON,
    MetricKey("train-loss", "float", "mean training loss of the last local epoch (FedSGD: of "
              "the batch)", low=0, raw=True),
    MetricKey("local-steps", "int", "optimizer steps taken in the round (protected: the public "
              "E*ceil(n_hat/B))", low=0, released=True),
    # taken after the node's own privatization (clients.privacy.release): post-processing
    MetricKey(KEY_NORM_BIT, "int", "1 if the update was clipped (client-side adaptive clipping)",
              low=0, high=1, when=ADAPTIVE_FLAG, released=True),
    MetricKey("local-dp-client-epsilon-release", "float", "client-level epsilon of this local "
              "DP release", low=0, when=LOCAL_DP_KEY, released=True),
    MetricKey("local-dp-client-epsilon", "float", "client-level epsilon of all this node's "
              "local DP releases", low=0, when=LOCAL_DP_KEY, released=True),
    MetricKey("dp-sgd-sample-epsilon", "float", "sample-level epsilon DP-SGD spent so far",
              low=0, when=DP_SGD_KEY, released=True),
    MetricKey("dp-sgd-noise-multiplier", "float", "DP-SGD's noise multiplier sigma (public: "
              "from the settings, not the data)", low=0, when=DP_SGD_KEY,
              released=True),
    MetricKey("dp-epsilon-understated", "int", "1: this node's ledger does not cover every "
              "earlier round (it was lost or started late), so its epsilon is a lower bound",
              low=0, high=1, when=CLIENT_DP_FLAG, released=True),
    MetricKey("spike-dp-bit-epsilon", "float", "spike-level DP: epsilon per bit", low=0,
              when=SPIKE_DP_KEY, released=True),
    MetricKey("spike-dp-sample-epsilon", "float", "spike-level DP: per-sample epsilon spent",
              low=0, when=SPIKE_DP_KEY, released=True),
    # a decision, never a score (its one-round bit is data-dependent: docs/audit.md, firewall)
    MetricKey(FIREWALL_KEY, "int", "the node's privacy firewall: 0 off/report, 1 allowed, "
              "2 hardened (FIREWALL_DECISIONS)", low=0, high=2, per_client=True, released=True),
    MetricKey(FIREWALL_REASON_KEY, "int", "the firewall's reason code (FIREWALL_REASONS)",
              low=0, high=len(FIREWALL_REASONS) - 1, per_client=True, released=True),
)

EVALUATE_METRICS: dict[str, MetricKey] = _declare(
    *_COMMON,
    MetricKey("eval-loss", "float", "loss of the global model on the local test split", low=0,
              raw=True),
    MetricKey("eval-acc", "float", "accuracy of the global model on the local test split",
              low=0, high=1, raw=True),
)

REPLY_METRICS = {"train": TRAIN_METRICS, "evaluate": EVALUATE_METRICS}

# What a DP-protected client may send besides its (privatized) arrays (`MetricKey.released`):
# under a client-side defense (CLIENT_DP_FLAG in the round's config) nothing else leaves it.
PROTECTED_REPLY_KEYS = frozenset(k.name for table in REPLY_METRICS.values()
                                 for k in table.values() if k.released)


def expected_keys(declared: Mapping[str, MetricKey], config: Mapping[str, Any] | None
                  ) -> frozenset[str] | None:
    """The metric keys a reply must carry for a round sent with `config` (None when the config
    is unknown: then only `required_keys` are known).

    Example:
        >>> sorted(expected_keys(EVALUATE_METRICS, {}))
        ['eval-acc', 'eval-loss', 'num-examples', 'partition-id']
    """
    if config is None:
        return None
    keys = frozenset(k.name for k in declared.values() if not k.when or config.get(k.when))
    return keys & PROTECTED_REPLY_KEYS if config.get(CLIENT_DP_FLAG) else keys


def required_keys(declared: Mapping[str, MetricKey]) -> frozenset[str]:
    """Keys every reply of this kind carries, whatever the round's config (a DP-protected reply
    keeps only `PROTECTED_REPLY_KEYS`)."""
    return frozenset(k.name for k in declared.values() if not k.when) & PROTECTED_REPLY_KEYS


def released_metrics(metrics: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """`metrics` as they may leave the node: under a client-side defense (`CLIENT_DP_FLAG` in the
    round's config) only the allow-listed keys; a raw `train-loss` or `eval-acc` is dropped."""
    if not config.get(CLIENT_DP_FLAG):
        return dict(metrics)
    return {key: value for key, value in metrics.items() if key in PROTECTED_REPLY_KEYS}


def per_client_keys() -> frozenset[str]:
    """Keys that identify a client or its samples: never averaged."""
    return frozenset(k.name for table in REPLY_METRICS.values() for k in table.values()
                     if k.per_client)
