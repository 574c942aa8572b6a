"""CIFAR-100 from its standard `cifar-100-python` pickles (never downloaded).

Spec: `cifar100:<dir>[,labels=fine|coarse]`, where `<dir>` is the extracted `cifar-100-python`
folder (files `train`, `test`, `meta`) or the folder holding it. Each split file is a pickled dict
(Python 2 bytes keys) with `data` (uint8 [N, 3072]: the red, green and blue 32x32 planes, row
major), `fine_labels` (100 classes) and `coarse_labels` (20 superclasses). The same data is on the
Hugging Face hub as `hf:uoft-cs/cifar100` (its `fine_label` column is what `hf:` reads).

The pickles are read by an unpickler that accepts only the NumPy globals an array needs, so a
crafted file cannot run code.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedsnn.core.data.base import DatasetError, ImageData, _train_test
from fedsnn.core.image_format import resize
from fedsnn.core.data.spec_options import one_of, parse_folder_options

log = logging.getLogger(__name__)

USAGE = "'cifar100:<dir>[,labels=fine|coarse]' with the cifar-100-python files train and test"
CLASSES = {"fine": 100, "coarse": 20}
SIDE = 32
# what a pickled NumPy array may reference (Python 2 pickles, protocols 2-5 of NumPy 1.x and 2.x)
ALLOWED_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                   ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
                   ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
                   # NumPy integer scalars (labels saved as a list of np.int64, not of int)
                   ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not a NumPy array)")
        return super().find_class(module, name)


def _field(batch: dict[Any, Any], key: str) -> Any:
    """`batch[key]`, whether the pickle has bytes keys (the original files) or str keys."""
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise KeyError(key)


def read_split(path: Path, labels: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, 3, 32, 32] in [0, 1] and the `labels` ('fine' or 'coarse') of one split file.

    Raises:
        DatasetError: unreadable, truncated or not a CIFAR-100 split (one line naming `path`).
    """
    try:
        with path.open("rb") as handle:
            batch = _ArrayUnpickler(handle, encoding="bytes").load()
        data = np.asarray(_field(batch, "data"), dtype=np.uint8)
        targets = np.asarray(_field(batch, f"{labels}_labels"), dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE or len(targets) != len(data):
            raise ValueError(f"expected data [N, {3 * SIDE * SIDE}] and N labels, got "
                             f"{data.shape} and {targets.shape}")
        if len(targets) and not 0 <= targets.min() <= targets.max() < CLASSES[labels]:
            raise ValueError(f"{labels} labels outside [0, {CLASSES[labels]})")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, KeyError,
            AttributeError, IndexError) as error:
        detail = f"no {error} entry" if isinstance(error, KeyError) else str(error) or type(error).__name__
        raise DatasetError(f"cifar100: cannot read {path}: {detail}") from None
    images = torch.from_numpy(data.reshape(-1, 3, SIDE, SIDE).astype(np.float32) / 255.0)
    return images, torch.from_numpy(targets)


def _root(folder: Path) -> Path:
    for candidate in (folder, folder / "cifar-100-python"):
        if (candidate / "train").is_file() or (candidate / "test").is_file():
            return candidate
    raise DatasetError(f"cifar100: no 'train' or 'test' file in {folder} or "
                       f"{folder / 'cifar-100-python'}; expected {USAGE}")


def load_cifar100(argument: str, image_size: int = SIDE) -> ImageData:
    """CIFAR-100 from `argument` (see the module docstring), resized to `image_size`.

    Both splits when both files are there (the standard 50,000 / 10,000); one file alone is split
    80/20 with the fixed split seed, and the note says so.

    Example:
        >>> load_cifar100("/data/cifar-100-python,labels=coarse").num_classes  # doctest: +SKIP
        20
    """
    folder, options = parse_folder_options("cifar100", argument,
                                           {"labels": one_of(*CLASSES)}, USAGE)
    labels = str(options.get("labels", "fine"))
    root = _root(Path(folder).expanduser())
    splits = {name: read_split(root / name, labels) for name in ("train", "test")
              if (root / name).is_file()}
    (train_x, train_y, test_x, test_y), only = _train_test(splits)
    how = f"only the {only} file is present; split 80/20" if only else "standard splits"
    note = (f"CIFAR-100 ({labels} labels) from {root}: train {len(train_x)} / test {len(test_x)} "
            f"({how}), {SIDE}x{SIDE} resized to {image_size}x{image_size}")
    log.info(note)
    return ImageData(f"cifar100:{argument}", resize(train_x, image_size), train_y,
                     resize(test_x, image_size), test_y, CLASSES[labels], note=note,
                     native_size=SIDE)
