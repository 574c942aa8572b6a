"""A small LRU cache of trained attack components (the rate decoder's decoders, the learned
inverter's inverters): training one is the attack's main cost, and one per global model (and
round settings) serves every client of a round."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TrainedCache(Generic[T]):
    """The `size` most recently used items by key; `trained` counts the items made."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, T] = OrderedDict()
        self.trained = 0

    def get_or_train(self, key: str, train: Callable[[], T]) -> T:
        """The item under `key`, trained with `train()` on a miss (the oldest item is dropped
        beyond `size`)."""
        if key not in self._items:
            self._items[key] = train()
            self.trained += 1
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        self._items.move_to_end(key)
        return self._items[key]
