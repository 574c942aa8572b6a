"""Canaries for the one-run audit (`fedsnn.core.privacy.one_run`), for the mechanisms whose unit
is a client's update or a spike bit (DP-SGD's Dirac canaries are in `dpsgd_audit`).

Every canary is in (S = +1) or out (S = −1) with probability ½, drawn with `secrets`: the
attacker knows where the canaries are, never which are in.

- **client level** (local DP, central DP; replace one client): m canary clients, canary i's
  update is +10C·e_i or −10C·e_i (a known direction; clipping brings them to ±C, the two
  neighbours at the largest distance 2C, and a mechanism that skips clipping shows it). The
  release is whatever the mechanism makes of them, round after round; the attacker scores
  canary i by the i-th coordinate of what it sees, summed over rounds, minus the noise it can
  derive (none, unless the mechanism draws it from a seed the server knows).
- **bit level** (spike-level DP; replace one bit): m canary bits, 1 if in and 0 if out, go
  through the spike mechanism once; the attacker scores each by the bit it sees.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import numpy as np
import torch

# (updates [m, d] of the m canary clients, round) -> what the attacker sees [m, d]: row i is what
# it sees of client i (its own release, or the shared aggregate)
ClientRelease = Callable[[np.ndarray, int], np.ndarray]
# (round) -> the noise [m, d] the attacker can derive for that round's release (or zeros)
DerivableNoise = Callable[[int], np.ndarray]


def secret_inclusion(m: int, *, seed: int | None = None) -> np.ndarray:
    """m independent fair bits (True = in), from `secrets`: no seed the server knows (`seed`:
    a reproducible draw, for experiments over seeds)."""
    if m < 1:
        raise ValueError(f"Expected at least one canary, got {m}")
    return np.random.default_rng(secrets.randbits(128) if seed is None else seed).random(m) < 0.5


def client_canary_scores(release: ClientRelease, included: np.ndarray, *, clipping_norm: float,
                         rounds: int, derivable_noise: DerivableNoise | None = None,
                         canary_norm_factor: float = 10.0) -> np.ndarray:
    """The attacker's score per canary client after `rounds` releases (higher = "in").

    Args:
        release: the mechanism under audit, applied to the canaries' updates.
        included: the secret S per canary (length m; the updates have d = m coordinates).
        clipping_norm: C; a canary's update is ±`canary_norm_factor`·C along its own coordinate.
        rounds: releases composed (the run's rounds).
        derivable_noise: noise the threat model lets the attacker compute (a known seed).
        canary_norm_factor: the canaries' norm before clipping, in units of C.
    """
    m = len(included)
    signs = np.where(included, 1.0, -1.0)
    updates = np.diag(signs * canary_norm_factor * clipping_norm)
    scores = np.zeros(m)
    for server_round in range(1, rounds + 1):
        seen = np.asarray(release(updates.copy(), server_round), dtype=np.float64)
        if derivable_noise is not None:
            seen = seen - derivable_noise(server_round)
        scores += np.diagonal(seen)
    return scores


def spike_canary_scores(mechanism: Callable[..., torch.Tensor], included: np.ndarray, *,
                        seed: int | None = None) -> np.ndarray:
    """Each canary bit (1 if in, 0 if out) through the spike mechanism once (its coins from
    `secrets`, or `seed`); the score is the bit the attacker sees."""
    bits = torch.from_numpy(included.astype(np.float32))
    generator = torch.Generator().manual_seed(secrets.randbits(63) if seed is None else seed)
    return mechanism(bits, generator=generator).double().numpy()
