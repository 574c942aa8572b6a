"""A client's random draws, and what they derive from: one place, used by the client and the
auditor alike (the auditor recomputes which samples a client trained on; no copy of this code).

Everything here derives from public values — the run's `seed`, the round and the partition id —
so whoever knows them (the server does) can recompute it: the FedSGD batch, the batch order of
local epochs, the Poisson encoder's spikes and the partition itself. What a client draws from
`secrets` (DP noise: local DP, DP-SGD, spike-DP flips) is not derivable.
"""

from __future__ import annotations

import torch


def round_seed(run_seed: int, server_round: int, partition_id: int) -> int:
    """A node's seed for a round: batches, shuffling and Poisson spikes derive from it."""
    return run_seed * 1_000_003 + server_round * 1009 + partition_id


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
