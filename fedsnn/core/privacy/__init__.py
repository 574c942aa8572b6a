"""Privacy mechanisms and their accounting (no Flower here).

- `accounting`: ε of composed Gaussian and randomized-response releases, and the noise for a
  target ε, all from Google's dp-accounting.
- `clipping`: clip-and-noise of a model update (what central and local DP do to an update).
- `spikes`: randomized response on spike tensors, its DP subsampling variant, and the per-sample
  spike accountant with a budget.
- `dpsgd`: DP-SGD with Opacus behind two functions (local epochs, or one private gradient).
- `mia`: the membership-inference audit of a trained model.
- `one_run`: the one-run ε lower bound (Steinke, Nasr & Jagielski 2023) from canary guesses;
  `canaries` (client-level and spike-bit canaries) and `dpsgd_audit` (Dirac gradient and canary
  sample games for DP-SGD) plant and score the canaries (`dp-audit`, docs/audit.md).
"""

from fedsnn.core.privacy.accounting import (ACCOUNTANTS, AccountingError, gaussian_epsilon,
                                       gaussian_noise_multiplier, randomized_response_epsilon)

__all__ = ["ACCOUNTANTS", "AccountingError", "gaussian_epsilon", "gaussian_noise_multiplier",
           "randomized_response_epsilon"]
