"""Accounting: σ ↔ ε round-trips, ε grows with releases, and per-sample randomized-response ε is
the composition over all of a sample's bits (dp-accounting's PLD count bug is worked around)."""

from __future__ import annotations

import math

import dp_accounting
import pytest
from dp_accounting import dp_event
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant
from flwr.supercore.privacy_accounting import (GaussianPrivacyEvent, NeighboringRelation,
                                               PrivacyConfig, SamplingMethod)
from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

from fedsnn.core.privacy.accounting import (AccountingError, gaussian_epsilon,
                                       gaussian_noise_multiplier, randomized_response_epsilon)

DELTA = 1e-5


@pytest.mark.parametrize("accountant,target,releases,rate", [
    ("rdp", 1.0, 10, 1.0), ("rdp", 8.0, 20, 1.0), ("rdp", 4.0, 500, 0.02), ("pld", 8.0, 20, 1.0)])
def test_noise_for_a_target_epsilon_spends_exactly_that_epsilon(accountant: str, target: float,
                                                                 releases: int, rate: float) -> None:
    z = gaussian_noise_multiplier(target_epsilon=target, delta=DELTA, releases=releases,
                                  sample_rate=rate, accountant=accountant)
    spent = gaussian_epsilon(noise_multiplier=z, releases=releases, delta=DELTA,
                             sample_rate=rate, accountant=accountant)
    assert spent == pytest.approx(target, rel=1e-3)
    # and the smallest such z: 1% less noise overspends
    assert gaussian_epsilon(noise_multiplier=0.99 * z, releases=releases, delta=DELTA,
                            sample_rate=rate, accountant=accountant) > target


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_epsilon_grows_with_rounds_and_shrinks_with_noise(accountant: str) -> None:
    rounds = [gaussian_epsilon(noise_multiplier=1.0, releases=r, delta=DELTA, accountant=accountant)
              for r in (0, 1, 2, 5, 10, 30)]
    assert rounds[0] == 0.0 and all(a < b for a, b in zip(rounds, rounds[1:]))
    assert gaussian_epsilon(noise_multiplier=2.0, releases=10, delta=DELTA,
                            accountant=accountant) < rounds[4]
    assert gaussian_epsilon(noise_multiplier=0.0, releases=1, delta=DELTA) == math.inf


def test_central_dp_epsilon_matches_flowers_own_accountant() -> None:
    config = PrivacyConfig(target_delta=DELTA, population_size=3,
                           neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                           sampling_method=SamplingMethod.NO_AMPLIFICATION)
    flower = RdpAccountant(config)
    flower.compose(GaussianPrivacyEvent(noise_multiplier=0.8, sample_size=3, population_size=3), 7)
    ours = gaussian_epsilon(noise_multiplier=0.8, releases=7, delta=DELTA)
    assert ours == pytest.approx(flower.get_epsilon(DELTA), rel=1e-9)


def test_dp_accountings_pld_ignores_the_count_of_randomized_response() -> None:
    """The library trap this module works around (dp-accounting 0.6.0): if this starts failing,
    the library was fixed and the special case in `randomized_response_epsilon` can go."""
    event = dp_event.RandomizedResponseDpEvent(2 / (1 + math.e), 2)
    ledger = pld_privacy_accountant.PLDAccountant(dp_accounting.NeighboringRelation.REPLACE_ONE)
    ledger.compose(event, 100)
    assert ledger.get_epsilon(DELTA) == pytest.approx(1.0, abs=1e-3)  # one bit's ε, not 100 bits'


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_per_sample_epsilon_of_a_spike_tensor_is_the_composition_over_its_bits(accountant: str
                                                                                ) -> None:
    time_steps, channels, height, width = 4, 1, 4, 4
    bits = time_steps * channels * height * width
    epsilon_bit = 1.0
    noise = 2 / (1 + math.exp(epsilon_bit))
    reported = randomized_response_epsilon(noise_parameter=noise, bits=bits, delta=DELTA,
                                           accountant=accountant)
    # an independent composition: one RR event per bit, no `count` anywhere
    reference = rdp_privacy_accountant.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    reference.compose(dp_event.ComposedDpEvent([dp_event.RandomizedResponseDpEvent(noise, 2)] * bits))
    expected = reference.get_epsilon(DELTA)
    if accountant == "rdp":
        assert reported == pytest.approx(expected, rel=1e-9)
    else:  # PLD is tighter than RDP, never looser, and far from the per-bit figure
        assert 0.8 * expected < reported <= expected
    assert reported > 10 * epsilon_bit
    # and two releases compose further
    assert randomized_response_epsilon(noise_parameter=noise, bits=bits, delta=DELTA, releases=2,
                                       accountant=accountant) > reported


def test_bad_arguments_are_refused_in_one_line() -> None:
    for call in (lambda: gaussian_epsilon(noise_multiplier=1, releases=1, delta=0.0),
                 lambda: gaussian_epsilon(noise_multiplier=-1, releases=1, delta=DELTA),
                 lambda: gaussian_epsilon(noise_multiplier=1, releases=1, delta=DELTA,
                                          accountant="moments"),
                 lambda: gaussian_noise_multiplier(target_epsilon=0, delta=DELTA, releases=1),
                 lambda: randomized_response_epsilon(noise_parameter=0, bits=4, delta=DELTA)):
        with pytest.raises(AccountingError) as info:
            call()
        assert "\n" not in str(info.value)
