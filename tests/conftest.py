"""Shared fixtures. `../shared/` exists for developers and CI only: tests that read it skip
cleanly when it is absent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"

torch.set_num_threads(1)


@pytest.fixture
def mnist_dir() -> Path:
    """The real MNIST test set in ../shared/data/mnist (skips when absent)."""
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("../shared/data/mnist is not present")
    return SHARED_MNIST


@pytest.fixture
def flower_server_identity() -> Iterator[None]:
    """What Flower's runtime sets in a ServerApp process (Message() needs it)."""
    from fedsnn.tools.local_grid import server_identity

    with server_identity():
        yield
