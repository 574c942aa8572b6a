"""Train-config and metric keys shared by the defense wrappers (server) and `clients.privacy`.

Wrappers put their settings into each round's train config under the run-config key names
(`local-dp-clipping-norm`, `dp-sgd-max-grad-norm`, `spike-dp-mechanism`, `dp-delta`, ...);
the flags below have no run-config counterpart.
"""

CENTRAL_DP_FLAG = "central-dp"           # 1: the client reports EQUAL_WEIGHT_KEY = 1
ADAPTIVE_FLAG = "central-dp-adaptive"    # 1: the client reports Flower's norm bit
# The weight FedAvg averages by under central DP: 1 in training replies (the update mean must be
# unweighted for the C/m sensitivity), the example count in evaluation replies (not a DP release).
EQUAL_WEIGHT_KEY = "dp-weight"
