"""Judges: trained once per dataset + settings, then read from the cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import fedsnn.judges as judges
from fedsnn.data import load_dataset


def test_judge_is_trained_once_then_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_dataset("digits")
    first = judges.load_judge(data, epochs=1, directory=tmp_path)
    assert 0.5 < first.test_accuracy <= 1.0  # one epoch on 1,438 digits is already far above chance
    assert len(list(tmp_path.glob("*.pt"))) == 1

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached judge should have been used")

    monkeypatch.setattr(judges, "train_judge", no_training)
    again = judges.load_judge(data, epochs=1, directory=tmp_path)
    assert again.test_accuracy == first.test_accuracy and again.key == first.key
    x = data.test_x[:16]
    assert torch.equal(again.predict(x), first.predict(x))
    assert judges.judge_key(data, epochs=2, seed=0) != first.key  # other settings, other judge


def test_majority_class_baseline_guesses_the_most_frequent_train_label() -> None:
    from fedsnn.data import ImageData

    x = torch.zeros(6, 3, 12, 12)
    data = ImageData("toy", x, torch.tensor([2, 2, 2, 0, 1, 1]), x[:4], torch.tensor([2, 0, 2, 1]), 3)
    assert judges.majority_accuracy(data) == 0.5
