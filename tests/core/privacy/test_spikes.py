"""Spike-level DP: flip rates match 1/(1+e^ε), the subsampling variant is actually DP, the
accountant reports the per-sample ε (not ε_bit) and enforces its budget."""

from __future__ import annotations

import math

import pytest
import torch

from fedsnn.core.privacy.accounting import randomized_response_epsilon
from fedsnn.core.privacy.spikes import (KeepOrCoin, RandomizedResponse, SpikeLedger,
                                   SpikeBudgetExhausted, build_mechanism, debiased_rate,
                                   poisson_spikes)

SHAPE = (4, 64, 1, 28, 28)  # T x B x C x H x W: 200,704 bits


def within_three_sigma(rate: float, p: float, n: int) -> bool:
    return abs(rate - p) <= 3 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("epsilon_bit", [0.1, 1.0, 3.0])
def test_randomized_response_flips_each_bit_with_probability_1_over_1_plus_e_eps(
        epsilon_bit: float) -> None:
    generator = torch.Generator().manual_seed(0)
    spikes = (torch.rand(SHAPE, generator=generator) < 0.3).float()
    out = RandomizedResponse(epsilon_bit)(spikes, generator=generator)
    p = 1 / (1 + math.exp(epsilon_bit))
    assert within_three_sigma(float((out != spikes).float().mean()), p, spikes.numel())
    assert set(out.unique().tolist()) <= {0.0, 1.0} and out.dtype == spikes.dtype


def test_subsampling_keeps_a_fraction_and_replaces_the_rest_by_coins_so_zeros_become_ones() -> None:
    generator = torch.Generator().manual_seed(1)
    mechanism = KeepOrCoin(keep_probability=0.6)
    zeros = torch.zeros(SHAPE)
    out = mechanism(zeros, generator=generator)
    # plain dropping could never output a 1 from a 0: this one does, at rate (1 - q) / 2
    assert within_three_sigma(float(out.mean()), 0.2, zeros.numel())
    ones = mechanism(torch.ones(SHAPE), generator=generator)
    assert within_three_sigma(float(1 - ones.mean()), 0.2, zeros.numel())
    assert mechanism.epsilon_bit == pytest.approx(math.log(1.6 / 0.4))
    assert mechanism.flip_probability == pytest.approx(1 / (1 + math.exp(mechanism.epsilon_bit)))


def test_non_binary_input_and_unknown_mechanisms_are_refused() -> None:
    with pytest.raises(ValueError, match="binary spike tensor"):
        RandomizedResponse(1.0)(torch.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="Unknown spike mechanism 'drop'; expected one of"):
        build_mechanism("drop")
    with pytest.raises(ValueError, match="epsilon_bit"):
        RandomizedResponse(0.0)


def test_reported_per_sample_epsilon_is_the_composition_over_t_c_h_w_bits_not_epsilon_bit() -> None:
    time_steps, channels, size = 4, 1, 28
    bits = time_steps * channels * size * size
    ledger = SpikeLedger(RandomizedResponse(0.05), bits_per_sample=bits, delta=1e-5)
    noise = 2 / (1 + math.exp(0.05))
    expected = randomized_response_epsilon(noise_parameter=noise, bits=bits, delta=1e-5)
    assert ledger.sample_epsilon(1) == pytest.approx(expected)
    assert ledger.epsilon_bit == 0.05
    assert ledger.sample_epsilon(1) > 50 * ledger.epsilon_bit
    assert ledger.sample_epsilon(3) > ledger.sample_epsilon(1)


def test_the_budget_stops_the_release_that_would_exceed_it_with_a_clear_message() -> None:
    ledger = SpikeLedger(RandomizedResponse(0.01), bits_per_sample=784, delta=1e-5, budget=3.0)
    affordable = ledger.affordable_releases(50)
    assert 1 <= affordable < 50
    assert ledger.check(affordable) <= 3.0
    with pytest.raises(SpikeBudgetExhausted) as info:
        ledger.check(affordable + 1)
    message = str(info.value)
    assert "budget spent" in message and "budget 3" in message and "\n" not in message


def test_privatized_rates_are_unbiased_after_debiasing() -> None:
    """(At 0.5 the clamp to [0, 1] cuts both tails alike; elsewhere it pulls towards 0.5.)"""
    generator = torch.Generator().manual_seed(2)
    images = torch.full((256, 1, 8, 8), 0.5)
    mechanism = RandomizedResponse(1.0)
    spikes = mechanism(poisson_spikes(images, time_steps=8, generator=generator),
                       generator=generator)
    assert spikes.shape == (256, 8, 1, 8, 8)
    rate = debiased_rate(spikes, flip_probability=mechanism.flip_probability)
    assert float(rate.mean()) == pytest.approx(0.5, abs=0.01)
