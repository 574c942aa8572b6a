"""A node's own floor for client-side DP: what it will not go below, whatever the server asks.

The DP settings a node applies (noise multipliers, target ε, epochs) arrive in the round's
config, from the server. An honest-but-curious server sends what the run configured; a malicious
one can send z = 0 (the update leaves in the clear), a tiny σ, or no defense at all. A node that
sets a policy in its own node config refuses such a round with a reason instead of training:

    flower-supernode ... --node-config "partition-id=0 num-partitions=2
        dp-min-noise-multiplier=1.0 dp-max-epsilon-round=2 dp-max-epsilon=8"

- `dp-min-noise-multiplier`: the least σ / C (local DP's z, DP-SGD's σ) it accepts;
- `dp-max-epsilon-round`: the most ε one round may spend, per mechanism, in that mechanism's
  unit (local DP: per client; DP-SGD, spike-level DP: per sample; `fedsnn.core.privacy.units`);
- `dp-max-epsilon`: the most ε its ledger may reach in total, per mechanism and unit.

With any of them set, a round that asks for no client-side DP at all is refused too. Without a
policy a node still refuses a Gaussian defense without noise (z or σ ≤ 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

POLICY_KEYS = ("dp-min-noise-multiplier", "dp-max-epsilon-round", "dp-max-epsilon")


class PolicyRefused(ValueError):
    """The round's DP settings are below this node's policy; the message says which and why."""


@dataclass(frozen=True)
class Ask:
    """What a round asks of one mechanism: its noise multiplier (None: not a Gaussian one) and,
    lazily, the ε of this round alone and of the node's ledger after it (in the mechanism's unit)."""

    mechanism: str
    noise_multiplier: float | None
    epsilon_round: Callable[[], float]
    epsilon_total: Callable[[], float]


@dataclass(frozen=True)
class DpPolicy:
    """The node's floor (defaults: none beyond refusing zero noise)."""

    min_noise_multiplier: float = 0.0
    max_epsilon_round: float = math.inf
    max_epsilon: float = math.inf

    @classmethod
    def from_node_config(cls, node_config: Mapping[str, Any]) -> DpPolicy:
        """The policy in a node's config (`POLICY_KEYS`).

        Raises:
            ValueError: a value that is not a non-negative number (one line, naming the key).
        """
        values = {}
        for key, field in zip(POLICY_KEYS, ("min_noise_multiplier", "max_epsilon_round",
                                             "max_epsilon"), strict=True):
            if key not in node_config:
                continue
            try:
                value = float(node_config[key])
            except (TypeError, ValueError):
                value = math.nan
            if not value >= 0 or (field != "min_noise_multiplier" and value == 0):
                raise ValueError(f"node config {key}: expected a positive number, got "
                                 f"{node_config[key]!r}")
            values[field] = value
        return cls(**values)

    @property
    def active(self) -> bool:
        return (self.min_noise_multiplier > 0 or math.isfinite(self.max_epsilon_round)
                or math.isfinite(self.max_epsilon))

    def refusal(self, asks: Sequence[Ask]) -> str | None:
        """Why this node refuses a round asking `asks` (None: it accepts)."""
        if self.active and not asks:
            return (f"this node's DP policy ({self.describe()}) needs client-side DP (local-dp, "
                    "dp-sgd or spike-dp), and the round's config asks for none")
        for ask in asks:
            z = ask.noise_multiplier
            if z is not None and not z > 0:
                return f"{ask.mechanism}: noise multiplier {z:g} adds no noise; refused"
            if z is not None and z < self.min_noise_multiplier:
                return (f"{ask.mechanism}: noise multiplier {z:.4g} < this node's "
                        f"dp-min-noise-multiplier {self.min_noise_multiplier:g}")
            if math.isfinite(self.max_epsilon_round) and (
                    spent := ask.epsilon_round()) > self.max_epsilon_round:
                return (f"{ask.mechanism}: this round would spend ε {spent:.4g} > this node's "
                        f"dp-max-epsilon-round {self.max_epsilon_round:g}")
            if math.isfinite(self.max_epsilon) and (total := ask.epsilon_total()) > self.max_epsilon:
                return (f"{ask.mechanism}: this round would bring ε to {total:.4g} > this node's "
                        f"dp-max-epsilon {self.max_epsilon:g}")
        return None

    def check(self, asks: Sequence[Ask]) -> None:
        """Raises:
            PolicyRefused: `refusal` gave a reason."""
        reason = self.refusal(asks)
        if reason is not None:
            raise PolicyRefused(f"DP policy: {reason}")

    def describe(self) -> str:
        parts = [f"{key}={value:g}" for key, value in zip(
            POLICY_KEYS, (self.min_noise_multiplier, self.max_epsilon_round, self.max_epsilon),
            strict=True) if value > 0 and math.isfinite(value)]
        return ", ".join(parts) or "none"
