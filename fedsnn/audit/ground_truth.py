"""Ground truth for the auditor, obtained outside the messages: which train-split samples a
client trained on in a round. No client reply carries it.

- In simulation the auditor recomputes it from what the simulation itself knows: the run's
  partitioning (seed, partitioner, number of partitions), the round seed and the very draw the
  client makes (`NodeSetup.training_indices`: one function, used by both).
  With `client-randomness = "secret"` a FedSGD batch comes from the node's secret seed: not
  derivable, so there is none (a FedAvg reply still uses every local train sample). Nor under
  DP-SGD in FedSGD mode: its batch is a Poisson draw from a secret generator (the sampling
  amplification DP-SGD's ε counts on requires that nobody outside the node knows it).
- In a deployment there is none (`no_ground_truth`) unless the operator provides it: nodes with
  their own data (`data-path`) hold samples the server cannot look up. Unscored rows say so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from clients.node import NodeSetup
from fedsnn.core.config import RunConfig, defense_names

# (server round, partition id) -> train-split ids the client trained on; None: not known
GroundTruth = Callable[[int, int], Sequence[int] | None]


def no_ground_truth(server_round: int, partition_id: int) -> None:
    """A deployment's default: nothing to score against."""
    return None


def simulated_ground_truth(config: RunConfig, num_partitions: int) -> GroundTruth:
    """The samples each partition's client trains on, recomputed as the client draws them.

    Example:
        >>> truth = simulated_ground_truth(RunConfig(update_mode="gradient", batch_size=2), 3)
        >>> len(truth(1, 0))
        2
    """
    secret_batch = config.update_mode == "gradient" and "dp-sgd" in defense_names(config)

    def sample_ids(server_round: int, partition_id: int) -> list[int] | None:
        if not 0 <= partition_id < num_partitions or secret_batch:
            return None  # DP-SGD's FedSGD batch is a Poisson draw from a secret generator
        if config.client_randomness == "secret" and config.update_mode == "gradient":
            return None  # the batch came from the node's secret seed: not derivable
        node = NodeSetup.for_partition(config, partition_id, num_partitions)
        return node.data.train_ids[node.training_indices(server_round)].tolist()

    return sample_ids
