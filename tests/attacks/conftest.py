"""Fixtures for the attack tests (helpers in victims.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from fedsnn.core.data import load_dataset
from tests.attacks.victims import Victim, observe


@pytest.fixture(scope="session")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's real handwritten digits at 28x28 (train split)."""
    data = load_dataset("digits")
    return data.train_x, data.train_y


@pytest.fixture
def victim(digits: tuple[torch.Tensor, torch.Tensor]) -> Callable[..., Victim]:
    """victim(model_name, index=0, batch=1, seed=0) -> (observation, x, y)."""

    def make(model_name: str, index: int = 0, batch: int = 1, seed: int = 0, **spec: object) -> Victim:
        x, y = digits[0][index:index + batch], digits[1][index:index + batch]
        return observe(model_name, x, y, seed=seed, **spec), x, y

    return make
