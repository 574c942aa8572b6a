"""Fixtures for the attack tests (helpers in victims.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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


@contextmanager
def no_fallback(caplog: pytest.LogCaptureFixture, logger: str) -> Iterator[None]:
    """A vectorized engine re-runs a failing group one target at a time (same results) and warns
    on `logger`: fail on that warning, so a comparison tests the vectorized path, not the
    fallback."""
    caplog.set_level(logging.WARNING, logger=logger)
    yield
    assert not [r for r in caplog.records if r.name == logger], caplog.text
