"""Privacy accounting with Google's dp-accounting: every ε this project reports comes from here.

Two mechanisms are accounted:

- the Gaussian mechanism (central DP, local DP; DP-SGD is accounted by Opacus), given its noise
  multiplier z = σ / Δ relative to the release's L2 sensitivity Δ, composed over releases, with
  optional Poisson subsampling. Without subsampling the privacy loss depends on σ / Δ only, so a
  replace-one mechanism is accounted as the Gaussian with Δ the replace-one sensitivity (2C for
  a clipped update: `replace_one_multiplier`). dp-accounting's RDP accountant does *not* do
  this for you: under REPLACE_ONE it treats a GaussianDpEvent as having sensitivity 1;
- binary randomized response (spike-level DP), given its noise parameter (the probability of
  answering with a fair coin instead of the true bit), composed over bits and releases;
  neighbouring datasets differ by replacing one unit (dp-accounting defines RR only for that).

dp-accounting 0.6.0's PLD accountant ignores the `count` of a composed randomized-response event
(`compose(event, 3136)` reports the ε of a single bit), so randomized response under "pld" is
composed here with `PrivacyLossDistribution.self_compose`, and under "rdp" with the RDP
accountant, whose count is correct. `tests/core/privacy/test_accounting.py` pins both facts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import dp_accounting
from dp_accounting import dp_event
from dp_accounting.pld import pld_privacy_accountant, privacy_loss_distribution
from dp_accounting.rdp import rdp_privacy_accountant

NeighboringRelation = dp_accounting.NeighboringRelation

# PLD discretization of the privacy loss; finer is (slightly) tighter and much slower.
PLD_INTERVAL = 1e-3

# name -> accountant factory for a neighbouring relation
ACCOUNTANTS: dict[str, Callable[[NeighboringRelation], dp_accounting.PrivacyAccountant]] = {
    "rdp": lambda relation: rdp_privacy_accountant.RdpAccountant(neighboring_relation=relation),
    "pld": lambda relation: pld_privacy_accountant.PLDAccountant(
        relation, value_discretization_interval=PLD_INTERVAL),
}

# Smallest noise multiplier calibration searches: below it ε is in the hundreds for any useful
# number of releases, and PLD's discretized distributions no longer fit in memory.
MIN_NOISE_MULTIPLIER = 0.1


class AccountingError(ValueError):
    """Accounting arguments that mean nothing (negative noise, δ outside (0, 1), ...)."""


def _accountant(name: str, relation: NeighboringRelation) -> dp_accounting.PrivacyAccountant:
    if name not in ACCOUNTANTS:
        raise AccountingError(f"Unknown accountant {name!r}; expected one of {sorted(ACCOUNTANTS)}")
    return ACCOUNTANTS[name](relation)


def _check(*, delta: float, releases: int, sample_rate: float = 1.0) -> None:
    if not 0.0 < delta < 1.0:
        raise AccountingError(f"Expected delta in (0, 1), got {delta}")
    if releases < 0:
        raise AccountingError(f"Expected a non-negative number of releases, got {releases}")
    if not 0.0 < sample_rate <= 1.0:
        raise AccountingError(f"Expected a sample rate in (0, 1], got {sample_rate}")


def gaussian_event(*, noise_multiplier: float, sample_rate: float = 1.0) -> dp_event.DpEvent:
    """One Gaussian release with noise σ = noise_multiplier · Δ, Poisson-subsampled if
    `sample_rate` < 1."""
    event = dp_event.GaussianDpEvent(noise_multiplier)
    return event if sample_rate >= 1.0 else dp_event.PoissonSampledDpEvent(sample_rate, event)


def gaussian_epsilon(*, noise_multiplier: float, releases: int, delta: float,
                     sample_rate: float = 1.0, accountant: str = "rdp") -> float:
    """ε after `releases` Gaussian releases with noise multiplier z (σ = z · Δ), at `delta`.

    Args:
        noise_multiplier: σ divided by the release's L2 sensitivity; 0 means no noise (ε = ∞).
        releases: how many releases were composed (0 gives ε = 0).
        delta: the δ at which ε is reported.
        sample_rate: Poisson sampling probability of the unit in each release (1: no
            amplification).
        accountant: "rdp" or "pld".

    Example:
        >>> round(gaussian_epsilon(noise_multiplier=1.0, releases=10, delta=1e-5), 2)
        19.05
    """
    _check(delta=delta, releases=releases, sample_rate=sample_rate)
    if noise_multiplier < 0:
        raise AccountingError(f"Expected a non-negative noise multiplier, got {noise_multiplier}")
    if releases == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    ledger = _accountant(accountant, NeighboringRelation.ADD_OR_REMOVE_ONE)
    ledger.compose(gaussian_event(noise_multiplier=noise_multiplier, sample_rate=sample_rate),
                   releases)
    return float(ledger.get_epsilon(delta))


def replace_one_multiplier(noise_multiplier: float) -> float:
    """The multiplier σ / Δ of noise σ = z·C under replace-one: two clipped updates (each of norm
    ≤ C) differ by up to Δ = 2C, so σ / Δ = z / 2 (central DP with a fixed m, local DP)."""
    return noise_multiplier / 2


def composed_gaussian_epsilon(*, history: Sequence[tuple[Sequence[float], int]], delta: float,
                              accountant: str = "rdp") -> float:
    """ε of a history of releases, each a composition of Gaussian mechanisms.

    Args:
        history: (noise multipliers σ/Δ of one release's parts, number of such releases); e.g.
            adaptive clipping releases an update and a clipped count each round: ((z_u, z_b), n).
        delta: the δ at which ε is reported.
        accountant: "rdp" or "pld".

    Example:
        >>> round(composed_gaussian_epsilon(history=[((1.0,), 10)], delta=1e-5), 2)
        19.05
    """
    _check(delta=delta, releases=sum(count for _, count in history))
    if any(z < 0 for parts, _ in history for z in parts):
        raise AccountingError(f"Expected non-negative noise multipliers, got {history}")
    events = [dp_event.SelfComposedDpEvent(
        dp_event.ComposedDpEvent([dp_event.GaussianDpEvent(z) for z in parts]), count)
        for parts, count in history if count > 0 and parts]
    if not events:
        return 0.0
    if any(z == 0 for parts, count in history if count > 0 for z in parts):
        return math.inf
    ledger = _accountant(accountant, NeighboringRelation.ADD_OR_REMOVE_ONE)
    ledger.compose(dp_event.ComposedDpEvent(events))
    return float(ledger.get_epsilon(delta))


def gaussian_noise_multiplier(*, target_epsilon: float, delta: float, releases: int,
                              sample_rate: float = 1.0, accountant: str = "rdp") -> float:
    """The smallest noise multiplier z whose `releases`-fold composition is (target_epsilon,
    delta)-DP by the same accountant as `gaussian_epsilon` (so the two round-trip). The search
    starts at `MIN_NOISE_MULTIPLIER`; a target loose enough for less noise gets that much.

    Example:
        >>> z = gaussian_noise_multiplier(target_epsilon=8.0, delta=1e-5, releases=20)
        >>> round(gaussian_epsilon(noise_multiplier=z, releases=20, delta=1e-5), 4)
        8.0
    """
    _check(delta=delta, releases=releases, sample_rate=sample_rate)
    if not target_epsilon > 0:
        raise AccountingError(f"Expected a positive target epsilon, got {target_epsilon}")
    if releases == 0:
        raise AccountingError("Expected at least one release to calibrate the noise for")
    return float(dp_accounting.calibrate_dp_mechanism(
        lambda: _accountant(accountant, NeighboringRelation.ADD_OR_REMOVE_ONE),
        lambda z: dp_event.SelfComposedDpEvent(
            gaussian_event(noise_multiplier=z, sample_rate=sample_rate), releases),
        target_epsilon, delta,
        bracket_interval=dp_accounting.LowerEndpointAndGuess(MIN_NOISE_MULTIPLIER, 1.0),
        tol=1e-5))


def randomized_response_epsilon(*, noise_parameter: float, bits: int, delta: float,
                                releases: int = 1, accountant: str = "rdp") -> float:
    """ε of `releases` releases of a `bits`-bit record through binary randomized response.

    Each bit is independently kept with probability 1 − `noise_parameter` and otherwise replaced
    by a fair coin (flip probability noise_parameter / 2). A record's neighbour may differ in all
    of its bits, so one release composes `bits` mechanisms and `releases` releases compose
    bits · releases of them.

    Args:
        noise_parameter: probability of answering with a fair coin, in (0, 1].
        bits: bits in one record (T·C·H·W for a spike tensor).
        delta: the δ at which ε is reported.
        releases: how many independent releases of the record were composed.
        accountant: "rdp" or "pld".

    Example:
        >>> p = 2 / (1 + math.exp(1.0))  # flip probability 1/(1+e)
        >>> round(randomized_response_epsilon(noise_parameter=p, bits=1, delta=1e-9,
        ...                                   accountant="pld"), 3)
        1.0
    """
    _check(delta=delta, releases=releases)
    if not 0.0 < noise_parameter <= 1.0:
        raise AccountingError(f"Expected a noise parameter in (0, 1], got {noise_parameter}")
    if bits < 1:
        raise AccountingError(f"Expected at least one bit per record, got {bits}")
    count = bits * releases
    if count == 0 or noise_parameter == 1.0:
        return 0.0
    if accountant == "pld":
        pld = privacy_loss_distribution.from_randomized_response(
            noise_parameter=noise_parameter, num_buckets=2,
            value_discretization_interval=PLD_INTERVAL,
            neighboring_relation=NeighboringRelation.REPLACE_ONE)
        return float(pld.self_compose(count).get_epsilon_for_delta(delta))
    ledger = _accountant(accountant, NeighboringRelation.REPLACE_ONE)
    ledger.compose(dp_event.RandomizedResponseDpEvent(noise_parameter, 2), count)
    return float(ledger.get_epsilon(delta))
