"""What an (ε, δ) guarantee buys against membership inference (docs/audit.md, issue 27).

Any (ε, δ)-DP mechanism bounds a membership test on one record: TPR ≤ e^ε·FPR + δ. For the
Gaussian mechanism (every ε of central and local DP here, and DP-SGD without its sampling
amplification) the exact limit is its μ-GDP trade-off curve, TPR ≤ Φ(Φ⁻¹(FPR) + μ) (Dong, Roth
and Su 2019), with μ the one whose (ε, δ) curve passes through the reported ε at δ. This prints
both bounds at FPR 1 % and 0.1 % for ε = 1 … 256 at δ = 1e-5.

Example:

    python -m experiments.epsilon_meaning
"""

from __future__ import annotations

import math

from scipy.optimize import brentq
from scipy.stats import norm

DELTA = 1e-5
EPSILONS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def gaussian_delta(epsilon: float, mu: float) -> float:
    """δ(ε) of a μ-GDP mechanism (Balle and Wang 2018)."""
    return float(norm.cdf(-epsilon / mu + mu / 2) - math.exp(epsilon) * norm.cdf(-epsilon / mu - mu / 2))


def gaussian_mu(epsilon: float, delta: float = DELTA) -> float:
    """The μ of the Gaussian mechanism that is exactly (ε, δ)-DP."""
    return float(brentq(lambda mu: gaussian_delta(epsilon, mu) - delta, 1e-4, 500.0))


def main() -> None:
    print(f"| ε (δ = {DELTA:g}) | μ (GDP) | TPR at FPR 1 % (Gaussian) | TPR at FPR 0.1 % (Gaussian)"
          " | TPR at FPR 1 % (any mechanism, e^ε·FPR + δ) |")
    print("|---|---|---|---|---|")
    for epsilon in EPSILONS:
        mu = gaussian_mu(epsilon)
        tpr = [float(norm.cdf(norm.ppf(fpr) + mu)) for fpr in (0.01, 0.001)]
        generic = min(1.0, math.exp(epsilon) * 0.01 + DELTA)
        print(f"| {epsilon} | {mu:.2f} | {100 * tpr[0]:.1f} % | {100 * tpr[1]:.1f} % | "
              f"{100 * generic:.1f} % |")


if __name__ == "__main__":
    main()
