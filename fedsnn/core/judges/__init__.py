"""Judges: classifiers that score reconstructions (attack success rate).

`base` holds the image judge, its training and the on-disk cache; `dvs` the spiking judge for
event datasets. `load_judge` picks the one that fits the data.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fedsnn.core.data import ImageData
from fedsnn.core.models import build_model
from fedsnn.core.judges.base import (JUDGE_ARCHITECTURE, Judge, cache_dir, cached_judge, image_spec,
                                judge_key, majority_accuracy, train_judge)
from fedsnn.core.judges.card import NOT_MEANINGFUL, flag_asr, judge_sentence, stored_card
from fedsnn.core.judges.dvs import load_dvs_judge
from fedsnn.core.judges.fit import JudgeTraining, is_meaningful

__all__ = ["JUDGE_ARCHITECTURE", "NOT_MEANINGFUL", "Judge", "JudgeTraining", "cache_dir",
           "cached_judge", "flag_asr", "is_meaningful", "judge_key", "judge_sentence", "load_judge",
           "majority_accuracy", "stored_card", "train_judge"]


def load_judge(data: ImageData, *, epochs: int | None = None, seed: int = 0,
               directory: Path | None = None, split: str = "train") -> Judge:
    """The cached judge for `data`, trained and cached on first use: a LeNet-5 for images, the
    DVS judge (`fedsnn.core.judges.dvs`) for event datasets (spike frames [N, T, 2, H, W]).

    Args:
        epochs: the most training epochs (early stopping on a validation slice usually ends
            sooner); None picks the judge's default.
        split: the split it is fit on; it is measured on the other one. Fit it on the split the
            scored samples are not in: "train" when test samples are attacked (the bench),
            "test" when clients' train samples are (the in-line audit).

    Example:
        >>> from fedsnn.core.data import load_dataset
        >>> judge = load_judge(load_dataset("digits"), split="test")  # doctest: +SKIP
        >>> judge.test_accuracy > judge.baseline  # doctest: +SKIP
        True
    """
    if data.train_x.dim() == 5:
        return load_dvs_judge(data, epochs=epochs, seed=seed, directory=directory, split=split)
    epochs = epochs or JudgeTraining().max_epochs
    return cached_judge(directory or cache_dir(),
                        judge_key(data, epochs=epochs, seed=seed, split=split,
                                  training=replace(JudgeTraining(), max_epochs=epochs)),
                        build=lambda: build_model(image_spec(data)),
                        train=lambda: train_judge(data, epochs=epochs, seed=seed, split=split),
                        meta={"dataset": data.name, "architecture": JUDGE_ARCHITECTURE,
                              "epochs": epochs, "seed": seed})
