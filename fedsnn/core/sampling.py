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


def epoch_batches(num_examples: int, *, epochs: int, batch_size: int, seed: int | None
                  ) -> list[torch.Tensor]:
    """Index batches of `epochs` passes over `num_examples` samples, in visiting order.

    Each epoch is a fresh `torch.randperm` from one generator seeded with `seed`, cut into
    consecutive batches of `batch_size` (the last one may be smaller). `seed=None` keeps the
    samples in their own order every epoch (an attacker who does not know the shuffle).

    Example:
        >>> [b.tolist() for b in epoch_batches(3, epochs=2, batch_size=2, seed=None)]
        [[0, 1], [2], [0, 1], [2]]
    """
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(epochs):
        order = (torch.arange(num_examples) if generator is None
                 else torch.randperm(num_examples, generator=generator))
        batches += [order[start:start + batch_size] for start in range(0, num_examples, batch_size)]
    return batches
