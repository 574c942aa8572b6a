"""What every dataset source shares: the `ImageData` they return, the error they raise and the
fixed train/test split (every source builds on it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

SPLIT_SEED = 20260101  # fixed: the train/test split never depends on the run's seed


class DatasetError(ValueError):
    """A dataset spec or file that cannot be loaded; the message says what was expected."""


@dataclass(frozen=True)
class ImageData:
    """A labelled image dataset with a train and a test split."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    note: str = ""
    native_size: int | None = None
    """The side of the source images before they were resized to `image_size` (digits: 8);
    None when unknown or not one size. Part of the dataset's spec: the server knows it from
    the dataset it names (capability data-format, `fedsnn.core.image_format`)."""

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[-3])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])


def _split(x: torch.Tensor, y: torch.Tensor, test_fraction: float) -> tuple[torch.Tensor, ...]:
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def _train_test(splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]]
                ) -> tuple[tuple[torch.Tensor, ...], str | None]:
    """(train_x, train_y, test_x, test_y) from the splits a source found: its own "train" and
    "test" when both are there, else the one present split 80/20 with the fixed seed (`_split`);
    and the name of that lone split (None when both were there), for the source's note."""
    if len(splits) == 2:
        (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
        return (train_x, train_y, test_x, test_y), None
    (only,) = splits
    return _split(*splits[only], 0.2), only

