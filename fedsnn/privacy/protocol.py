"""Train-config and metric keys shared by the defense wrappers (server) and `clients.privacy`.

Wrappers put their settings into each round's train config under the run-config key names
(`local-dp-clipping-norm`, `dp-sgd-max-grad-norm`, `spike-dp-mechanism`, `dp-delta`, ...);
the flags below have no run-config counterpart.
"""

from collections.abc import Mapping
from typing import Any

CENTRAL_DP_FLAG = "central-dp"           # 1: the client reports EQUAL_WEIGHT_KEY = 1
ADAPTIVE_FLAG = "central-dp-adaptive"    # 1: the client reports Flower's norm bit
# The weight FedAvg averages by under central DP: 1 in training replies (the update mean must be
# unweighted for the C/m sensitivity), the example count in evaluation replies (not a DP release).
EQUAL_WEIGHT_KEY = "dp-weight"
# Set in every train and evaluate config by a client-side defense (local DP, DP-SGD, spike-DP):
# the node's replies then carry only `PROTECTED_REPLY_KEYS`.
CLIENT_DP_FLAG = "client-dp"

# What a DP-protected client may send besides its (privatized) arrays, and why each is covered:
PROTECTED_REPLY_KEYS = frozenset({
    # Setup, not data: the node's label, and counts Flower's aggregation needs. FedSGD: the
    # configured batch size. FedAvg: the local train split's size and the steps it makes, released
    # in the clear as Flower and Opacus do (the dataset size is treated as public).
    "num-examples", "local-steps", "partition-id",
    EQUAL_WEIGHT_KEY,            # a constant 1
    "norm_bit",   # Flower's KEY_NORM_BIT (central DP's clipped bit), taken after local privatization
    # the privacy figures: functions of public settings and release counts
    "local-dp-client-epsilon", "local-dp-client-epsilon-release", "dp-sgd-sample-epsilon",
    "spike-dp-bit-epsilon", "spike-dp-sample-epsilon",
})


def released_metrics(metrics: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """`metrics` as they may leave the node: under a client-side defense (`CLIENT_DP_FLAG` in the
    round's config) only the allow-listed keys; a raw `train-loss` or `eval-acc` is dropped."""
    if not config.get(CLIENT_DP_FLAG):
        return dict(metrics)
    return {key: value for key, value in metrics.items() if key in PROTECTED_REPLY_KEYS}
