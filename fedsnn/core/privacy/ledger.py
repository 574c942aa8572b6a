"""A ledger of Gaussian releases with an Opacus-style `state_dict`, so ε survives a restart.

Each release is a tuple of noise multipliers σ/Δ (one per Gaussian mechanism the release
composes: the update, and for adaptive clipping the clipped count); equal consecutive releases
are merged into one history entry, as Opacus' accountants do. ε always comes from
`fedsnn.core.privacy.accounting` (dp-accounting) over the whole history, so a ledger restored from a
checkpoint reports exactly what an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fedsnn.core.privacy.accounting import composed_gaussian_epsilon

Release = tuple[float, ...]


class LedgerError(ValueError):
    """A saved ledger that cannot be restored; the message says why."""


@dataclass
class GaussianLedger:
    """Releases of Gaussian mechanisms so far, and their composed ε.

    Example:
        >>> ledger = GaussianLedger()
        >>> ledger.record(noise_multipliers=(1.0,))
        >>> GaussianLedger.from_state_dict(ledger.state_dict()).releases
        1
    """

    history: list[tuple[Release, int]] = field(default_factory=list)

    @property
    def releases(self) -> int:
        return sum(count for _, count in self.history)

    def record(self, *, noise_multipliers: Sequence[float]) -> None:
        """Add one release made of Gaussian mechanisms with these multipliers σ/Δ."""
        release = tuple(float(z) for z in noise_multipliers)
        if self.history and self.history[-1][0] == release:
            self.history[-1] = (release, self.history[-1][1] + 1)
        else:
            self.history.append((release, 1))

    def epsilon(self, *, delta: float, accountant: str = "rdp") -> float:
        """ε of every release so far (dp-accounting)."""
        return composed_gaussian_epsilon(history=self.history, delta=delta, accountant=accountant)

    def state_dict(self) -> dict[str, Any]:
        """Plain lists only (checkpoints load with `weights_only=True`)."""
        return {"mechanism": "gaussian",
                "history": [[list(release), count] for release, count in self.history]}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> GaussianLedger:
        """The ledger `state_dict` described.

        Raises:
            LedgerError: not a Gaussian ledger's state.
        """
        if state.get("mechanism") != "gaussian" or not isinstance(state.get("history"), list):
            raise LedgerError(f"not a Gaussian ledger state: {dict(state)!r:.200}")
        return cls([(tuple(float(z) for z in release), int(count))
                    for release, count in state["history"]])
