"""The registry of ledgers (as Opacus' `accountants/registry.py`): any ledger's `state_dict`
names its kind under `mechanism`, and `ledger_from_state` rebuilds it from that alone."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from fedsnn.core.privacy.ledger import GaussianLedger, Ledger, LedgerError, OpacusLedger
from fedsnn.core.privacy.spikes import RandomizedResponse, SpikeLedger
from fedsnn.core.privacy.units import LOCAL_UNIT


def _gaussian(state: Mapping[str, Any]) -> Ledger:
    return GaussianLedger(str(state.get("accountant", "rdp")), unit=LOCAL_UNIT)


def _spike(state: Mapping[str, Any]) -> Ledger:
    """Any spike mechanism is randomized response with the saved noise parameter p (the
    probability of a fair coin): ε_bit = ln(2/p − 1) rebuilds one with the same accounting."""
    noise = float(state["noise-parameter"])
    return SpikeLedger(RandomizedResponse(math.log(2.0 / noise - 1.0)),
                       bits_per_sample=int(state["bits-per-sample"]),
                       delta=float(state.get("delta", 1e-5)))


# kind (`Ledger.kind`, saved as "mechanism") -> an empty ledger fit for that state
LEDGERS: dict[str, Callable[[Mapping[str, Any]], Ledger]] = {
    GaussianLedger.kind: _gaussian,
    OpacusLedger.kind: lambda state: OpacusLedger(str(state.get("accountant", "rdp"))),
    SpikeLedger.kind: _spike,
}


def ledger_from_state(state: Mapping[str, Any]) -> Ledger:
    """The ledger `state` (a `Ledger.state_dict()`) was saved from, restored.

    Raises:
        LedgerError: an unknown kind, or a state its kind cannot load.

    Example:
        >>> ledger = OpacusLedger()
        >>> ledger.step(noise_multiplier=1.0, sample_rate=0.1, steps=3)
        >>> ledger_from_state(ledger.state_dict()).releases
        3
    """
    kind = state.get("mechanism")
    if kind not in LEDGERS:
        raise LedgerError(f"Unknown ledger {kind!r}; expected one of {sorted(LEDGERS)}")
    try:
        ledger = LEDGERS[str(kind)](state)
        ledger.load_state_dict(state)
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, LedgerError):
            raise
        raise LedgerError(f"{kind} ledger: unreadable state ({error})") from None
    return ledger

