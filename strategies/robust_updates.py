"""Client updates as flat float64 vectors, measured from the global model of the current round.

Robust rules that compare clients (Krum's distances, the norm filter) work on updates
Δ_i = w_i - w_global rather than on the weights themselves: the numbers are small, so float64
sums keep their precision late in training, when updates are tiny next to the weights.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid


class MalformedReply(ValueError):
    """A train reply without exactly one ArrayRecord."""


def reply_arrays(content: RecordDict) -> ArrayRecord:
    """The one ArrayRecord of a train reply (Flower's strategies require exactly one).

    Raises:
        MalformedReply: none or several.
    """
    if len(content.array_records) != 1:
        raise MalformedReply(f"expected one ArrayRecord, got {len(content.array_records)}")
    return next(iter(content.array_records.values()))


def flat64(record: ArrayRecord, keys: list[str] | None = None) -> np.ndarray:
    """All arrays of `record` (in `keys` order, default the record's) as one float64 vector."""
    keys = list(record.keys()) if keys is None else keys
    return np.concatenate([np.asarray(record[key].numpy(), dtype=np.float64).ravel()
                           for key in keys])


def stack_updates(contents: list[RecordDict], reference: ArrayRecord | None) -> np.ndarray:
    """An (n, d) float64 matrix of the replies' updates from `reference`.

    Without a reference (a strategy used without `configure_train`, as in unit tests), the
    arrays themselves are taken as the updates.
    """
    keys = list(reply_arrays(contents[0]).keys())
    updates = np.stack([flat64(reply_arrays(content), keys) for content in contents])
    if reference is not None:
        updates -= flat64(reference, keys)[None, :]
    return updates


class RoundGlobal:
    """Mixin for a Flower strategy: remembers the global arrays sent in the current round
    (`round_global`), so that `aggregate_train` can measure updates from them."""

    round_global: ArrayRecord | None = None

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Record `arrays`, then configure the round as the wrapped class does."""
        self.round_global = arrays
        parent: Any = super()
        return parent.configure_train(server_round, arrays, config, grid)
