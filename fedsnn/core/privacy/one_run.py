"""The one-run ε lower bound of Steinke, Nasr & Jagielski, "Privacy auditing with one (1) training
run" (NeurIPS 2023), computed with scipy.

The game: m canaries, each included (S_i = +1) or not (S_i = −1) independently with probability
½, secretly; one run of the mechanism; the auditor guesses T_i ∈ {+1, −1} for r of them and
abstains on the rest; v guesses are right. Changing one S_i must give neighbouring inputs under
the mechanism's relation (add/remove a sample, replace a client's update by another, flip a bit).

Their Theorem 5.2 (Appendix D's algorithm): if the mechanism is (ε, δ)-DP then

    P[v correct or more] ≤ P[Binomial(r, e^ε/(1+e^ε)) ≥ v] + 2mδ · max_{i=1..v} P[v−i ≤ W < v] / i

with W ~ Binomial(r, e^ε/(1+e^ε)). This p-value grows with ε; the lower bound at confidence
1 − β is the ε where it reaches β: every smaller ε is rejected. It is a lower bound *from one
attack*: a small bound proves nothing about the mechanism, and with m canaries it can never
exceed about ln(m) (all r = m guesses right).

Guesses come from scores (higher = "included"): the k₊ highest are guessed in, the k₋ lowest out.
Choosing (k₊, k₋) after seeing the result would void the confidence, so `bound_from_scores` tries
a fixed grid and pays for it with a Bonferroni correction (β / number of choices).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, special, stats

# Fractions of m guessed "in" (k₊ / m); each is tried with k₋ = 0 and with k₋ = k₊.
GUESS_FRACTIONS = (0.01, 0.03, 0.1, 0.3, 0.5)


def p_value(*, m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[≥ v of r guesses right] under the hypothesis that the mechanism is (ε, δ)-DP.

    Example:
        >>> round(p_value(m=10, r=10, v=10, epsilon=0.0, delta=0.0), 6)  # 10 fair coins
        0.000977
    """
    if not 0 <= v <= r <= m:
        raise ValueError(f"Expected 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    if epsilon < 0 or not 0 <= delta <= 1:
        raise ValueError(f"Expected epsilon >= 0 and delta in [0, 1], got {epsilon}, {delta}")
    q = float(special.expit(epsilon))  # accuracy of ε-DP randomized response
    tail = float(stats.binom.sf(v - 1, r, q))
    if delta == 0 or v == 0:
        return min(tail, 1.0)
    below = np.cumsum(stats.binom.pmf(np.arange(v - 1, -1, -1), r, q))  # P[v−i ≤ W < v], i=1..v
    alpha = float(np.max(below / np.arange(1, v + 1)))
    return min(tail + 2 * m * delta * alpha, 1.0)


def epsilon_lower_bound(*, m: int, r: int, v: int, delta: float, confidence: float) -> float:
    """The largest ε that v right guesses of r (m canaries) reject at `confidence`: the mechanism
    is not (ε', δ)-DP for any ε' below it, with probability ≥ `confidence` over the run.

    Example:
        >>> round(epsilon_lower_bound(m=10, r=10, v=10, delta=0.0, confidence=0.95), 4)
        1.0519
    """
    if not 0 < confidence < 1:
        raise ValueError(f"Expected a confidence in (0, 1), got {confidence}")
    beta = 1.0 - confidence

    def excess(epsilon: float) -> float:
        return p_value(m=m, r=r, v=v, epsilon=epsilon, delta=delta) - beta

    if excess(0.0) >= 0:
        return 0.0
    high = 1.0
    while excess(high) < 0:  # p → 1 as ε grows (q → 1), so this ends
        high *= 2
    return float(optimize.brentq(excess, 0.0, high, xtol=1e-6))


@dataclass(frozen=True)
class OneRunBound:
    """An ε lower bound and the guesses it came from."""

    epsilon: float       # the lower bound (0 when nothing is rejected)
    canaries: int        # m
    guesses: int         # r
    correct: int         # v
    guessed_in: int      # k₊
    guessed_out: int     # k₋
    confidence: float
    delta: float
    choices: int         # guess sizes tried (Bonferroni factor)

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def guess_sizes(m: int) -> list[tuple[int, int]]:
    """The fixed grid of (k₊, k₋) tried for m canaries."""
    sizes: list[tuple[int, int]] = []
    for fraction in GUESS_FRACTIONS:
        k = max(1, int(round(fraction * m)))
        for pair in ((k, 0), (k, min(k, m - k))):
            if pair not in sizes and sum(pair) <= m:
                sizes.append(pair)
    return sizes


def bound_from_scores(scores: Sequence[float], included: Sequence[bool], *, delta: float,
                      confidence: float = 0.95) -> OneRunBound:
    """The best one-run bound over `guess_sizes`, each at confidence 1 − β/choices.

    Args:
        scores: one membership score per canary, higher meaning "included".
        included: the secret truth per canary (read only to count right guesses).
        delta: δ of the hypothesis (the accounted δ).
        confidence: overall confidence of the reported bound.
    """
    scores_arr = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(included, dtype=bool)
    m = len(scores_arr)
    if m == 0 or len(truth) != m:
        raise ValueError(f"Expected as many truths as scores (> 0), got {len(truth)} and {m}")
    order = np.argsort(-scores_arr, kind="stable")  # highest first
    sizes = guess_sizes(m)
    per_choice = 1.0 - (1.0 - confidence) / len(sizes)
    best = OneRunBound(0.0, m, 0, 0, 0, 0, confidence, delta, len(sizes))
    for k_in, k_out in sizes:
        right = int(truth[order[:k_in]].sum())
        right += int((~truth[order[m - k_out:]]).sum()) if k_out else 0
        epsilon = epsilon_lower_bound(m=m, r=k_in + k_out, v=right, delta=delta,
                                      confidence=per_choice)
        if epsilon > best.epsilon:
            best = OneRunBound(epsilon, m, k_in + k_out, right, k_in, k_out, confidence, delta,
                               len(sizes))
    return best
