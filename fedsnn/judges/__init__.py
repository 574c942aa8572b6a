"""Judges: classifiers that score reconstructions (attack success rate).

`base` holds the image judge, its training and the on-disk cache; `dvs` the spiking judge for
event datasets. `load_judge` picks the one that fits the data.
"""

from __future__ import annotations

from pathlib import Path

from fedsnn.data import ImageData
from fedsnn.models import build_model
from fedsnn.judges.base import (JUDGE_ARCHITECTURE, Judge, cache_dir, cached_judge, image_spec,
                                judge_key, train_judge)
from fedsnn.judges.dvs import load_dvs_judge

__all__ = ["JUDGE_ARCHITECTURE", "Judge", "cache_dir", "cached_judge", "judge_key", "load_judge",
           "train_judge"]


def load_judge(data: ImageData, *, epochs: int | None = None, seed: int = 0,
               directory: Path | None = None) -> Judge:
    """The cached judge for `data`, trained and cached on first use: a LeNet-5 for images, the
    DVS judge (`fedsnn.judges.dvs`) for event datasets (spike frames [N, T, 2, H, W]).

    Args:
        epochs: training epochs; None picks the judge's default (8 for the LeNet-5).

    Example:
        >>> from fedsnn.data import load_dataset
        >>> judge = load_judge(load_dataset("digits"))  # doctest: +SKIP
        >>> judge.test_accuracy > 0.9  # doctest: +SKIP
        True
    """
    if data.train_x.dim() == 5:
        return load_dvs_judge(data, epochs=epochs, seed=seed, directory=directory)
    epochs = epochs or 8
    return cached_judge(directory or cache_dir(), judge_key(data, epochs=epochs, seed=seed),
                        build=lambda: build_model(image_spec(data)),
                        train=lambda: train_judge(data, epochs=epochs, seed=seed),
                        meta={"dataset": data.name, "architecture": JUDGE_ARCHITECTURE,
                              "epochs": epochs, "seed": seed})
