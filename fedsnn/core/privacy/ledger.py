"""One ledger interface for every accountant, as Opacus' `IAccountant`: a ledger records the
releases it accounts, reports ε over all of them (`epsilon(delta)`) in its `unit` (unit,
neighbouring relation, what it covers: `fedsnn.core.privacy.units`), and saves and restores its
state (`state_dict` / `load_state_dict`, plain JSON values, so checkpoints and node ledger files
load it back exactly). `fedsnn.core.privacy.registry` rebuilds any ledger from its state.

- `GaussianLedger`: releases of Gaussian mechanisms (central DP, local DP), ε from dp-accounting;
- `OpacusLedger`: DP-SGD's history (σ, q, steps), ε from Opacus' accountant;
- `fedsnn.core.privacy.spikes.SpikeLedger`: randomized-response releases of spike tensors.

ε always comes from a library accountant over the whole history, so a ledger restored from a
checkpoint or a node's ledger file reports exactly what an uninterrupted run would.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from opacus.accountants import create_accountant

from fedsnn.core.privacy.accounting import composed_gaussian_epsilon
from fedsnn.core.privacy.units import CENTRAL_UNIT, DPSGD_UNIT, EpsilonUnit

Release = tuple[float, ...]
# the project's `dp-accountant` values -> Opacus' accountant names
OPACUS_ACCOUNTANTS = {"rdp": "rdp", "pld": "prv"}


class LedgerError(ValueError):
    """A saved ledger that cannot be restored; the message says why."""


class Ledger(ABC):
    """What every accountant in fedsnn speaks (Opacus' `IAccountant`, with its unit).

    Attributes:
        kind: the registry's name of this kind of ledger (saved as `mechanism` in `state_dict`).
        unit: what `epsilon` means: unit, neighbouring relation, what it covers.
    """

    kind: ClassVar[str]
    unit: EpsilonUnit

    @property
    @abstractmethod
    def releases(self) -> int:
        """How many releases (rounds of this mechanism) the ledger holds."""

    @abstractmethod
    def epsilon(self, delta: float) -> float:
        """ε of every release so far at `delta`, in `self.unit`."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Plain JSON values (checkpoints load with `weights_only=True`)."""

    @abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from `state_dict`'s output.

        Raises:
            LedgerError: the state belongs to another mechanism, relation or setting.
        """

    def _expect(self, state: Mapping[str, Any], **expected: Any) -> None:
        """Refuse a state whose `mechanism` / `relation` / settings differ from this ledger's."""
        expected = {"mechanism": self.kind, "relation": self.unit.relation, **expected}
        for key, value in expected.items():
            # states saved before the interface (issue 25) may lack mechanism / relation
            if state.get(key, value if key in ("mechanism", "relation") else None) != value:
                raise LedgerError(f"{self.kind} ledger: the saved {key} is "
                                  f"{state.get(key)!r}, this one's is {value!r}; earlier releases "
                                  "cannot be composed with these (start a new ledger knowingly)")


class GaussianLedger(Ledger):
    """Releases of Gaussian mechanisms so far, and their composed ε (dp-accounting).

    Each release is a tuple of noise multipliers σ/Δ (one per Gaussian mechanism it composes: the
    update, and for adaptive clipping the clipped count); equal consecutive releases are merged
    into one history entry, as Opacus' accountants do.

    Example:
        >>> ledger = GaussianLedger()
        >>> ledger.record(noise_multipliers=(1.0,))
        >>> restored = GaussianLedger()
        >>> restored.load_state_dict(ledger.state_dict())
        >>> restored.releases, round(restored.epsilon(1e-5), 3) == round(ledger.epsilon(1e-5), 3)
        (1, True)
    """

    kind = "gaussian"

    def __init__(self, accountant: str = "rdp", unit: EpsilonUnit = CENTRAL_UNIT) -> None:
        self.accountant = accountant
        self.unit = unit
        self.history: list[tuple[Release, int]] = []

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

    def epsilon(self, delta: float) -> float:
        return composed_gaussian_epsilon(history=self.history, delta=delta,
                                         accountant=self.accountant)

    def state_dict(self) -> dict[str, Any]:
        return {"mechanism": self.kind, "relation": self.unit.relation,
                "accountant": self.accountant,
                "history": [[list(release), count] for release, count in self.history]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._expect(state)
        if not isinstance(state.get("history"), list):
            raise LedgerError(f"not a Gaussian ledger state: {dict(state)!r:.200}")
        self.accountant = str(state.get("accountant", self.accountant))
        self.history = [(tuple(float(z) for z in release), int(count))
                        for release, count in state["history"]]


class OpacusLedger(Ledger):
    """DP-SGD's accountant history in Opacus' format [(σ, sample rate q, steps)], and its ε.

    Flower re-creates the client every round and Opacus a `PrivacyEngine` per call, so the node
    keeps this history; `fedsnn.core.privacy.dpsgd` continues it.

    Example:
        >>> ledger = OpacusLedger()
        >>> ledger.step(noise_multiplier=1.0, sample_rate=0.01, steps=100)
        >>> round(ledger.epsilon(1e-5), 2)
        1.21
    """

    kind = "opacus"
    unit = DPSGD_UNIT

    def __init__(self, accountant: str = "rdp") -> None:
        if accountant not in OPACUS_ACCOUNTANTS:
            raise ValueError(f"Unknown accountant {accountant!r}; expected one of "
                             f"{sorted(OPACUS_ACCOUNTANTS)}")
        self.accountant = accountant
        self.history: list[tuple[float, float, int]] = []

    @property
    def releases(self) -> int:
        return sum(steps for *_, steps in self.history)

    def step(self, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Add `steps` DP-SGD steps at (σ, q), merged as Opacus merges them."""
        if self.history and self.history[-1][:2] == (noise_multiplier, sample_rate):
            self.history[-1] = (noise_multiplier, sample_rate, self.history[-1][2] + steps)
        else:
            self.history.append((float(noise_multiplier), float(sample_rate), int(steps)))

    def epsilon(self, delta: float) -> float:
        if not self.history:
            return 0.0
        accountant = create_accountant(OPACUS_ACCOUNTANTS[self.accountant])
        accountant.history = list(self.history)
        return float(accountant.get_epsilon(delta))

    def state_dict(self) -> dict[str, Any]:
        return {"mechanism": self.kind, "relation": self.unit.relation,
                "accountant": self.accountant, "history": [list(h) for h in self.history]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._expect(state, accountant=self.accountant)
        self.history = [(float(z), float(q), int(n)) for z, q, n in state.get("history", [])]
