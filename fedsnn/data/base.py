"""What every dataset source shares: the `ImageData` they return, the error they raise and the
fixed train/test split (sources.py and dvs.py both build on it)."""

from __future__ import annotations

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
    the dataset it names (capability data-format, `fedsnn.image_format`)."""

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
