"""Collect and restore the privacy ledgers of a strategy stack, for checkpoints.

A wrapper that spends privacy (central DP, spike-level DP) has `state_dict()` and
`load_state_dict(state)`, in the style of Opacus' accountants; the stack is walked through each
wrapper's `.strategy`, and each ledger is keyed by the wrapper's `label`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from flwr.serverapp.strategy import Strategy


@runtime_checkable
class Ledgered(Protocol):
    """A strategy wrapper whose privacy state must survive a restart."""

    label: str

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def ledger_owners(strategy: Strategy) -> dict[str, Ledgered]:
    """{label: wrapper} for every wrapper with a ledger in the stack, outermost first."""
    owners: dict[str, Ledgered] = {}
    seen: set[int] = set()
    current: object | None = strategy
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, Ledgered):
            owners[current.label] = current
        current = getattr(current, "strategy", None)
    return owners


def save_ledgers(strategy: Strategy) -> dict[str, dict[str, Any]]:
    """Every ledger's `state_dict`, by label."""
    return {label: owner.state_dict() for label, owner in ledger_owners(strategy).items()}


def restore_ledgers(strategy: Strategy, states: dict[str, dict[str, Any]]) -> list[str]:
    """Load the saved ledgers into the stack's wrappers; returns the labels restored. A ledger of
    a defense this run does not use is kept out (its ε no longer grows)."""
    owners = ledger_owners(strategy)
    for label, state in states.items():
        if label in owners:
            owners[label].load_state_dict(state)
    return sorted(set(states) & set(owners))
