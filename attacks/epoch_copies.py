"""Epoch-order-invariant replay for the unrolled attack (Dimitrov et al., TMLR 2022, Sec. 4).

A client that trains E > 1 epochs of mini-batches reshuffles its N samples every epoch. Without
the shuffle seed the attacker cannot know which samples shared a batch in which epoch; tying one
set of dummies to one batch assignment for every epoch (`attacks/unrolled.py`'s default) forces
the wrong batch composition on every epoch but the one it happens to match. Here each epoch gets
its own copy of the N dummies, batched in their own order, so each copy is free to take whatever
batch composition its epoch had. The copies are tied by a prior that does not depend on their
order: every few steps each copy is matched to copy 0 by an optimal assignment (pairwise squared
distance, scipy's `linear_sum_assignment`; a dummy is only matched to one of the same label), and
the prior is the mean squared distance of the matched copies to their mean. The reconstruction is
the matched mean; its batch layout (which of the N images sits at each of the E x N positions) is
what the final matching loss and the label refinement use.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment

from attacks.types import LocalTraining
from fedsnn.core.sampling import epoch_batches

# A dummy is matched to one of another label only when the assignment has no other choice.
LABEL_MISMATCH_COST = 1e6


def copies_apply(training: LocalTraining | None) -> bool:
    """Whether per-epoch copies change the replay: FedAvg over several epochs of several batches,
    with the shuffle unknown (a granted seed gives the true batches; one batch per epoch has no
    composition to get wrong)."""
    return (training is not None and training.update_mode == "fedavg" and training.epochs > 1
            and training.batch_size < training.num_examples and training.shuffle_seed is None)


def copy_batches(training: LocalTraining) -> list[torch.Tensor]:
    """The replay's batches over E x N dummies: epoch e visits copy e (indices e*N .. e*N+N-1)
    in its own order, cut as the client cuts its epoch.

    Example:
        >>> from attacks.types import LocalTraining
        >>> t = LocalTraining("fedavg", "sgd", 0.1, 0.0, epochs=2, batch_size=2, num_examples=3)
        >>> [b.tolist() for b in copy_batches(t)]
        [[0, 1], [2], [3, 4], [5]]
    """
    n = training.num_examples
    one_epoch = epoch_batches(n, epochs=1, batch_size=training.batch_size, seed=None)
    return [batch + epoch * n for epoch in range(training.epochs) for batch in one_epoch]


def match_to_first(copies: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """perm [E, N]: perm[e, i] is the dummy of copy e matched to dummy i of copy 0 (perm[0] is
    the identity). copies: [E, N, ...] (detached); labels: [E, N] hard labels."""
    epochs, n = copies.shape[:2]
    flat = copies.detach().reshape(epochs, n, -1).double()
    perm = [torch.arange(n)]
    for epoch in range(1, epochs):
        cost = torch.cdist(flat[0], flat[epoch]).pow(2)
        cost = cost + LABEL_MISMATCH_COST * (labels[0][:, None] != labels[epoch][None, :])
        rows, cols = linear_sum_assignment(cost.numpy())
        order = torch.empty(n, dtype=torch.long)
        order[torch.as_tensor(rows)] = torch.as_tensor(cols)
        perm.append(order)
    return torch.stack(perm)


def aligned(copies: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """[E, N, ...]: each copy reordered so that row i of every copy is the same sample."""
    return torch.stack([copies[e, perm[e]] for e in range(copies.shape[0])])


def invariance_prior(copies: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of the matched copies to their mean (differentiable in copies)."""
    matched = aligned(copies, perm)
    return (matched - matched.mean(0, keepdim=True)).pow(2).mean()


def layout(perm: torch.Tensor) -> torch.Tensor:
    """[E * N]: which of the N merged samples sits at each position of the copies' replay."""
    epochs, n = perm.shape
    positions = torch.empty(epochs, n, dtype=torch.long)
    for epoch in range(epochs):
        positions[epoch, perm[epoch]] = torch.arange(n)
    return positions.reshape(-1)
