"""White-box audit of DP-SGD with Dirac gradient canaries (Nasr et al., USENIX Security 2023), in
the one-run game of Steinke et al. (`fedsnn.core.privacy.one_run`).

m canaries, each a training "sample" whose gradient is a Dirac: all its mass on one parameter
coordinate of its own (norm `canary_norm_factor`·C before clipping, so clipping brings it to C).
Each is included with probability ½ (secret); an included canary joins each step's Poisson batch
with probability q, like every real sample, so Opacus' accountant (σ, q, steps) covers it.

The attacker sees every noisy gradient Opacus releases (what the per-sample ε covers: a FedSGD
server sees them all; a FedAvg server sees less, so this is the strongest observation) and scores
canary i by the log-likelihood ratio of its coordinate's values x_t (in units of C):
Σ_t log(1 − q + q·exp((x_t − ½)/σ²)), the Neyman–Pearson test of "sampled at rate q" against
"absent" for Gaussian noise σ·C. Real samples' gradients on that coordinate are a nuisance.

`canary_client_scores` is the black-box side: canary *samples*, one per canary client, scored by
what a reply holds (its model's loss on the canary, and a count if the reply leaks one).

`tamper` lets a test break the mechanism on purpose (noise too small, clipping skipped) while
the claimed ε stays that of the settings: the regression suite checks the audit catches it.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from opacus.accountants import create_accountant
from opacus.optimizers import DPOptimizer
from torch import nn

from fedsnn.core.privacy.dpsgd import (OPACUS_ACCOUNTANTS, DpSgdSettings, _empty_step,
                                       _make_private, poisson_loader, poisson_sample_rate,
                                       secret_generator)

Tamper = Callable[[DPOptimizer], None]


def claimed_epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                    accountant: str = "rdp") -> float:
    """Opacus' per-sample ε (add/remove one sample) of `steps` DP-SGD steps at (σ, q)."""
    ledger = create_accountant(OPACUS_ACCOUNTANTS[accountant])
    ledger.history = [(noise_multiplier, sample_rate, steps)]
    return float(ledger.get_epsilon(delta))


def _coordinates(model: nn.Module, m: int, seed: int) -> list[tuple[int, int]]:
    """(parameter index, flat index inside it) of m distinct coordinates; public (the attacker
    knows where the canaries are, not which were included)."""
    sizes = [p.numel() for p in model.parameters() if p.requires_grad]
    if m > sum(sizes):
        raise ValueError(f"{m} Dirac canaries need {m} coordinates; the model has {sum(sizes)}")
    flat = np.random.default_rng(seed).choice(sum(sizes), size=m, replace=False)
    starts = np.cumsum([0, *sizes])
    owner = np.searchsorted(starts, flat, side="right") - 1
    return [(int(o), int(f - starts[o])) for o, f in zip(owner, flat, strict=True)]


def _plant(params: list[nn.Parameter], coords: list[tuple[int, int]], sampled: np.ndarray,
           magnitude: float) -> None:
    """Append one per-sample gradient row per sampled canary (a Dirac of `magnitude`)."""
    rows = np.flatnonzero(sampled)
    for index, p in enumerate(params):
        extra = torch.zeros((len(rows), p.numel()), dtype=p.grad_sample.dtype)
        for row, canary in enumerate(rows):
            owner, flat = coords[canary]
            if owner == index:
                extra[row, flat] = magnitude
        p.grad_sample = torch.cat([p.grad_sample, extra.view(len(rows), *p.shape)])


def dirac_canary_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                        settings: DpSgdSettings, batch_size: int, steps: int,
                        included: np.ndarray, coordinate_seed: int = 0,
                        canary_norm_factor: float = 10.0, tamper: Tamper | None = None
                        ) -> np.ndarray:
    """Run `steps` DP-SGD steps on (x, y) plus the included Dirac canaries; the attacker's
    likelihood-ratio score per canary. The model's weights are not changed.

    Args:
        settings: the claimed mechanism (σ = settings.noise_multiplier, C, accountant).
        batch_size: expected batch size; q = 1 / ⌈len(x) / batch_size⌉ (Opacus' rule).
        steps: noisy gradients released (the run's steps for one client).
        included: the secret inclusion of each canary (its length is m).
        coordinate_seed: public seed of the canaries' coordinates.
        canary_norm_factor: a canary's gradient norm before clipping, in units of C.
        tamper: applied to Opacus' optimizer after it is built (tests break the mechanism).
    """
    m = len(included)
    clip = settings.max_grad_norm
    q = poisson_sample_rate(len(x), batch_size)
    sigma = settings.noise_multiplier
    coords = _coordinates(model, m, coordinate_seed)
    loader = poisson_loader(x, y, batch_size=batch_size, generator=secret_generator())
    model.train()
    plain = torch.optim.SGD(model.parameters(), lr=0.0)
    _, module, optimizer, _ = _make_private(model, plain, loader, settings, history=())
    if tamper is not None:
        tamper(optimizer)
    params = [p for p in model.parameters() if p.requires_grad]
    secret = np.random.default_rng(secrets.randbits(128))  # which canaries join a step
    owners = np.array([o for o, _ in coords])
    groups = {int(o): (np.flatnonzero(owners == o),
                       torch.tensor([coords[i][1] for i in np.flatnonzero(owners == o)]))
              for o in np.unique(owners)}
    scores = np.zeros(m)
    log_out, log_in = math.log1p(-q) if q < 1 else -math.inf, math.log(q)
    module.train()
    batches = iter(())
    try:
        for _ in range(steps):
            batch = next(batches, None)
            if batch is None:
                batches = iter(loader)
                batch = next(batches)
            optimizer.zero_grad()
            if len(batch[0]) == 0:
                _empty_step(module, optimizer)
            else:
                F.cross_entropy(module(batch[0]), batch[1]).backward()
            sampled = included & (secret.random(m) < q)
            _plant(params, coords, sampled, canary_norm_factor * clip)
            optimizer.pre_step()
            seen = np.empty(m)
            for owner, (where, flat) in groups.items():
                seen[where] = params[owner].grad.detach().view(-1)[flat].numpy()
            seen *= optimizer.expected_batch_size / clip  # the noisy sum, in units of C
            scores += np.logaddexp(log_out, log_in + (seen - 0.5) / sigma ** 2)
    finally:
        module.cleanup()
    return scores


# (training inputs, labels) -> (the model the reply carries, the reply's metrics)
SampleRelease = Callable[[torch.Tensor, torch.Tensor], tuple[nn.Module, Mapping[str, float]]]


def canary_client_scores(release: SampleRelease, base_x: torch.Tensor, base_y: torch.Tensor,
                         canary_x: torch.Tensor, canary_y: torch.Tensor, included: np.ndarray
                         ) -> np.ndarray:
    """Black-box sample canaries, one per canary client: client i trains on (base_x, base_y) plus
    canary i when it is in, and replies. The attacker uses all the reply holds: a reported
    `num-examples` above the public base size first (a count is no DP release), then the
    canary's loss on the returned model (lower = in)."""
    scores = np.zeros(len(included))
    for i, inside in enumerate(included):
        x = torch.cat([base_x, canary_x[i:i + 1]]) if inside else base_x
        y = torch.cat([base_y, canary_y[i:i + 1]]) if inside else base_y
        model, metrics = release(x, y)
        with torch.no_grad():
            loss = float(F.cross_entropy(model(canary_x[i:i + 1]), canary_y[i:i + 1]))
        excess = float(metrics.get("num-examples", len(base_x))) - len(base_x)
        scores[i] = excess + 1.0 / (1.0 + loss)  # the count, when it leaks, dominates
    return scores
