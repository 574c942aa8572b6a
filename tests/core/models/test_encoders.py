"""Input encoders for spiking models."""

from __future__ import annotations

import pytest
import torch

from fedsnn.core.models import build_encoder


def test_direct_repeats_the_image_on_every_step() -> None:
    x = torch.rand(2, 1, 8, 8)
    out = build_encoder("direct", 5)(x)
    assert out.shape == (5, 2, 1, 8, 8)
    assert all(torch.equal(out[t], x) for t in range(5))


def test_poisson_is_binary_seeded_and_rate_coded() -> None:
    x = torch.full((1, 1, 64, 64), 0.3)
    x[..., :32] = 0.8
    a = build_encoder("poisson", 200, seed=1)(x)
    b = build_encoder("poisson", 200, seed=1)(x)
    c = build_encoder("poisson", 200, seed=2)(x)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a, b) and not torch.equal(a, c)
    rates = a.mean(0)
    assert abs(rates[..., 32:].mean().item() - 0.3) < 0.01
    assert abs(rates[..., :32].mean().item() - 0.8) < 0.01


def test_frames_transposes_to_time_major() -> None:
    x = torch.rand(3, 4, 2, 8, 8)
    out = build_encoder("frames", 4)(x)
    assert out.shape == (4, 3, 2, 8, 8) and torch.equal(out[1, 2], x[2, 1])


@pytest.mark.parametrize("name,shape", [("direct", (1, 4, 1, 8, 8)), ("poisson", (8, 8)),
                                        ("frames", (2, 1, 8, 8))])
def test_wrong_dimensions_are_rejected(name: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=f"{name} encoding"):
        build_encoder(name, 4)(torch.rand(shape))


def test_unknown_encoding() -> None:
    with pytest.raises(ValueError, match="Unknown encoding 'rank-order'"):
        build_encoder("rank-order", 4)
