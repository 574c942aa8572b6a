"""The one-run ε lower bound (Steinke, Nasr & Jagielski 2023) against cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from fedsnn.core.privacy.one_run import (bound_from_scores, epsilon_lower_bound, guess_sizes,
                                         p_value)


def test_all_guesses_right_matches_the_closed_form() -> None:
    # δ = 0, r = v = 10: the p-value is q^10 with q = e^ε/(1+e^ε); it reaches β = 0.05 at
    # q = 0.05^(1/10), i.e. ε = logit(0.05^0.1) = 1.0519 (by hand).
    q = 0.05 ** 0.1
    expected = math.log(q / (1 - q))
    assert expected == pytest.approx(1.0519, abs=1e-4)
    assert epsilon_lower_bound(m=10, r=10, v=10, delta=0.0, confidence=0.95) == \
        pytest.approx(expected, abs=1e-5)


def test_p_value_is_the_binomial_tail_plus_the_delta_term() -> None:
    tail = stats.binom.sf(69, 100, 1 / (1 + math.exp(-0.5)))
    assert p_value(m=100, r=100, v=70, epsilon=0.5, delta=0.0) == pytest.approx(tail)
    # the δ term: 2mδ · max_i P[v−i ≤ W < v] / i, by hand for v = 2, r = 2, q = ½:
    # i = 1: P[W = 1] = ½; i = 2: P[W ≤ 1] / 2 = ¾ / 2 = 3/8 → α = ½; tail P[W = 2] = ¼
    expected = 0.25 + 2 * 2 * 0.01 * 0.5
    assert p_value(m=2, r=2, v=2, epsilon=0.0, delta=0.01) == pytest.approx(expected)


def test_chance_guesses_reject_nothing() -> None:
    assert epsilon_lower_bound(m=100, r=100, v=50, delta=1e-5, confidence=0.95) == 0.0


def test_delta_only_loosens_the_bound() -> None:
    pure = epsilon_lower_bound(m=1000, r=1000, v=800, delta=0.0, confidence=0.95)
    approx = epsilon_lower_bound(m=1000, r=1000, v=800, delta=1e-4, confidence=0.95)
    assert 0 < approx < pure


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_randomized_response_with_known_epsilon_is_audited_tightly_and_not_above(seed: int
                                                                                ) -> None:
    """ε-DP randomized response on m bits, the guess = the bit seen: the bound must stay below
    ε (validity) and, with 20,000 canaries, come within 10 % of it (tightness)."""
    epsilon, m = 1.0, 20_000
    rng = np.random.default_rng(seed)
    truth = rng.random(m) < 0.5
    flips = rng.random(m) < 1 / (1 + math.exp(epsilon))
    seen = truth ^ flips
    bound = bound_from_scores(seen.astype(float), truth, delta=0.0, confidence=0.95)
    assert 0.9 * epsilon < bound.epsilon <= epsilon


def test_bonferroni_grid_is_fixed_and_counted() -> None:
    sizes = guess_sizes(1000)
    assert (10, 0) in sizes and (500, 500) in sizes
    bound = bound_from_scores(np.arange(1000.0), np.arange(1000) >= 500, delta=0.0)
    assert bound.choices == len(sizes)
    assert bound.correct == bound.guesses  # perfect scores


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="v <= r <= m"):
        p_value(m=5, r=6, v=1, epsilon=1.0, delta=0.0)
    with pytest.raises(ValueError, match="confidence"):
        epsilon_lower_bound(m=5, r=5, v=5, delta=0.0, confidence=1.0)
    with pytest.raises(ValueError, match="as many truths"):
        bound_from_scores([1.0, 2.0], [True], delta=0.0)
