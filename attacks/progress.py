"""Watch a running attack: a per-step listener for callers that show progress (e.g. a live demo).

The optimization loop every attack shares (`attacks.matching.optimize`) reports each step to the
listener installed with `watch` in the current context (a `contextvars` variable, so each thread
or task watches only its own attack). The listener receives the step, its matching loss and the
best iterate so far (the attack's snapshot: for the input-optimizing attacks a tuple whose first
item is the dummy input); returning False stops the attack, which then returns its best iterate
as usual. Nothing here sees ground truth, and without a listener the loop runs exactly as before.

Example:
    >>> with watch(lambda step: step.index < 10):  # doctest: +SKIP
    ...     invert([observation], AttackSettings(attack="idlg"))  # stops after 10 steps
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Step:
    """One optimizer step of a running attack.

    Attributes:
        index: the step (0-based) within the current optimization.
        loss: the matching loss after the step.
        best: the best iterate's snapshot so far (None before a finite loss).
    """

    index: int
    loss: float
    best: Any


Listener = Callable[[Step], bool | None]

_LISTENER: ContextVar[Listener | None] = ContextVar("attack_listener", default=None)


@contextmanager
def watch(listener: Listener) -> Iterator[None]:
    """Report every optimizer step of attacks run inside this block to `listener`."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


def report(index: int, loss: float, best: Any) -> bool:
    """Tell the listener (if any) about a step; False when it asks the attack to stop."""
    listener = _LISTENER.get()
    return listener is None or listener(Step(index, loss, best)) is not False
