"""Spike-level DP: privatize a client's input spike tensors before training sees them.

Mechanisms (each bit of a binary tensor, independently):

- `randomized-response`: flip the bit with probability p = 1 / (1 + e^ε_bit);
- `subsample`: keep a q-subsample of the bits and replace every other bit by a fair coin. Plain
  dropping of spikes (keep a 1 with probability q, else 0) is *not* DP: it never turns a 0 into a 1,
  so a 1 in the output proves a 1 in the input. Replacing the dropped bits by coins is randomized
  response with flip probability (1 − q) / 2, i.e. ε_bit = ln((1 + q) / (1 − q)).

Both are ε_bit-DP *per bit*. A sample is T·C·H·W bits and a neighbouring sample may differ in all
of them, so one release of a sample composes T·C·H·W mechanisms; `SpikeLedger` reports both
figures, the per-sample one from dp-accounting, and enforces a per-sample budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from fedsnn.core.privacy.accounting import randomized_response_epsilon
from fedsnn.core.privacy.ledger import Ledger
from fedsnn.core.privacy.units import SPIKE_UNIT, EpsilonUnit


class SpikeBudgetExhausted(RuntimeError):
    """The next release of a sample's spikes would exceed the per-sample ε budget."""


@dataclass(frozen=True)
class RandomizedResponse:
    """Flip each bit with probability 1 / (1 + e^ε_bit)."""

    epsilon_bit: float

    def __post_init__(self) -> None:
        if not self.epsilon_bit > 0:
            raise ValueError(f"Expected argument `epsilon_bit` to be positive but got {self.epsilon_bit}")

    @property
    def flip_probability(self) -> float:
        return 1.0 / (1.0 + math.exp(self.epsilon_bit))

    @property
    def noise_parameter(self) -> float:
        """dp-accounting's parameter: the probability of answering with a fair coin."""
        return 2.0 * self.flip_probability

    def __call__(self, spikes: torch.Tensor, *, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        _expect_binary(spikes)
        flips = torch.rand(spikes.shape, generator=generator) < self.flip_probability
        return torch.where(flips, 1.0 - spikes, spikes).to(spikes.dtype)


@dataclass(frozen=True)
class KeepOrCoin:
    """Keep each bit with probability `keep_probability`, else replace it by a fair coin."""

    keep_probability: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.keep_probability < 1.0:
            raise ValueError("Expected argument `keep_probability` to be in [0, 1) but got "
                             f"{self.keep_probability}")

    @property
    def epsilon_bit(self) -> float:
        q = self.keep_probability
        return math.log((1.0 + q) / (1.0 - q))

    @property
    def flip_probability(self) -> float:
        return (1.0 - self.keep_probability) / 2.0

    @property
    def noise_parameter(self) -> float:
        return 1.0 - self.keep_probability

    def __call__(self, spikes: torch.Tensor, *, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        _expect_binary(spikes)
        keep = torch.rand(spikes.shape, generator=generator) < self.keep_probability
        coins = (torch.rand(spikes.shape, generator=generator) < 0.5).to(spikes.dtype)
        return torch.where(keep, spikes, coins)


SpikeMechanism = RandomizedResponse | KeepOrCoin

# name -> factory(epsilon_bit, keep_probability)
MECHANISMS: dict[str, Callable[[float, float], SpikeMechanism]] = {
    "randomized-response": lambda epsilon_bit, keep: RandomizedResponse(epsilon_bit),
    "subsample": lambda epsilon_bit, keep: KeepOrCoin(keep),
}


def build_mechanism(name: str, *, epsilon_bit: float = 1.0, keep_probability: float = 0.5
                    ) -> SpikeMechanism:
    """The mechanism `name` (randomized response uses ε_bit; subsample its keep probability).

    Example:
        >>> round(build_mechanism("subsample", keep_probability=0.5).epsilon_bit, 4)
        1.0986
    """
    if name not in MECHANISMS:
        raise ValueError(f"Unknown spike mechanism {name!r}; expected one of {sorted(MECHANISMS)}")
    return MECHANISMS[name](epsilon_bit, keep_probability)


def _expect_binary(spikes: torch.Tensor) -> None:
    if not bool(((spikes == 0) | (spikes == 1)).all()):
        raise ValueError("spike-level DP expects a binary spike tensor (0/1 values)")


def poisson_spikes(images: torch.Tensor, *, time_steps: int,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Rate-code [B, C, H, W] images in [0, 1] as binary spikes [B, T, C, H, W]."""
    rates = images.detach().clamp(0.0, 1.0)
    draws = torch.rand((rates.shape[0], time_steps, *rates.shape[1:]), generator=generator)
    return (draws < rates.unsqueeze(1)).to(images.dtype)


def debiased_rate(spikes: torch.Tensor, *, flip_probability: float) -> torch.Tensor:
    """An image estimate from privatized spikes [B, T, C, H, W]: the mean over T, corrected for
    the flips (E[out] = p + (1 − 2p)·rate) and clamped to [0, 1]. Post-processing: no ε cost."""
    mean = spikes.mean(dim=1)
    return ((mean - flip_probability) / (1.0 - 2.0 * flip_probability)).clamp(0.0, 1.0)


@dataclass
class SpikeLedger(Ledger):
    """Per-bit and honest per-sample ε of spike-level DP, its releases and its budget.

    A *release* of a sample is one privatization of its T·C·H·W-bit spike tensor (a client makes
    one per round for each sample it trains on and reuses it for every local epoch).

    Args:
        mechanism: the per-bit mechanism.
        bits_per_sample: T·C·H·W.
        delta: δ of the per-sample figure.
        budget: per-sample ε a sample may spend in total (0: no limit).
        accountant: "rdp" or "pld" (see `fedsnn.core.privacy.accounting`).
        count: releases recorded so far.
    """

    mechanism: SpikeMechanism
    bits_per_sample: int
    delta: float
    budget: float = 0.0
    accountant: str = "rdp"
    count: int = 0

    kind: ClassVar[str] = "randomized-response"
    unit: ClassVar[EpsilonUnit] = SPIKE_UNIT

    @property
    def releases(self) -> int:
        return self.count

    def record(self) -> float:
        """Count one more release if the budget allows it; its per-sample ε after it.

        Raises:
            SpikeBudgetExhausted: the release would exceed the budget; nothing is counted.
        """
        epsilon = self.check(self.count + 1)
        self.count += 1
        return epsilon

    def epsilon(self, delta: float | None = None) -> float:
        return randomized_response_epsilon(
            noise_parameter=self.mechanism.noise_parameter, bits=self.bits_per_sample,
            releases=self.count, delta=self.delta if delta is None else delta,
            accountant=self.accountant)

    def state_dict(self) -> dict[str, Any]:
        return {"mechanism": self.kind, "relation": self.unit.relation,
                "noise-parameter": self.mechanism.noise_parameter,
                "bits-per-sample": self.bits_per_sample, "delta": self.delta,
                "releases": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._expect(state, **{"noise-parameter": self.mechanism.noise_parameter,
                               "bits-per-sample": self.bits_per_sample})
        self.count = int(state["releases"])

    @property
    def epsilon_bit(self) -> float:
        """ε of one bit of one release: NOT a per-sample guarantee."""
        return self.mechanism.epsilon_bit

    def sample_epsilon(self, releases: int = 1) -> float:
        """ε of one sample after `releases` releases (all of its bits composed)."""
        return randomized_response_epsilon(noise_parameter=self.mechanism.noise_parameter,
                                           bits=self.bits_per_sample, releases=releases,
                                           delta=self.delta, accountant=self.accountant)

    def check(self, releases: int) -> float:
        """The per-sample ε after `releases` releases; raises when it exceeds the budget.

        Raises:
            SpikeBudgetExhausted: with the budget, the ε the release would reach and what to do.
        """
        epsilon = self.sample_epsilon(releases)
        if self.budget > 0 and epsilon > self.budget:
            raise SpikeBudgetExhausted(
                f"spike-level DP budget spent: release {releases} would bring the per-sample ε to "
                f"{epsilon:.4g} > budget {self.budget:g} (δ={self.delta:g}, ε_bit="
                f"{self.epsilon_bit:.4g} on {self.bits_per_sample} bits); training stops — raise "
                "spike-dp-budget or lower spike-dp-epsilon-bit / the number of rounds")
        return epsilon

    def affordable_releases(self, limit: int) -> int:
        """The most releases (≤ `limit`) the budget allows (`limit` when there is no budget)."""
        if self.budget <= 0:
            return limit
        count = 0
        while count < limit and self.sample_epsilon(count + 1) <= self.budget:
            count += 1
        return count
