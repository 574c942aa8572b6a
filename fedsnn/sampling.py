"""A client's random draws, and what they derive from: one place, used by the client and the
auditor alike (the auditor recomputes which samples a client trained on; no copy of this code).

Everything here derives from public values — the run's `seed`, the round and the partition id —
so whoever knows them (the server does) can recompute it: the FedSGD batch, the batch order of
local epochs, the Poisson encoder's spikes and the partition itself. With `client-randomness =
"secret"` a node replaces the run's seed by its own secret one (`clients.privacy.node_secret`):
batches, batch order and Poisson spikes are then not derivable; the partition and the node's
local train/test split still are. What a client draws from `secrets` (DP noise: local DP,
DP-SGD, spike-DP flips and spikes) is never derivable.
"""

from __future__ import annotations

import torch


def round_seed(run_seed: int, server_round: int, partition_id: int) -> int:
    """A node's seed for a round: batches, shuffling and Poisson spikes derive from it
    (`run_seed`: the run's public seed, or a node's secret one; kept within torch's 63 bits)."""
    return (run_seed * 1_000_003 + server_round * 1009 + partition_id) % 2**63


def training_indices(update_mode: str, num_samples: int, batch_size: int, seed: int
                     ) -> torch.Tensor:
    """Indices (into a client's local train split) of the samples one round trains on, sorted.

    - `gradient` (FedSGD): a batch of `batch_size` samples, a seeded uniform draw without
      replacement.
    - `fedavg`: every sample (local epochs go over all of them).
    """
    if update_mode == "gradient":
        order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed))
        return order[:batch_size].sort().values
    return torch.arange(num_samples)
