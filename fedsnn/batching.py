"""The order in which a client visits its local samples: one seeded shuffle per epoch.

Shared by the client's local training (`clients/training.py`) and by the server's replay of it
(`attacks/local_training.py`): a server that knows the seed derives the same batches.
"""

from __future__ import annotations

import torch


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
