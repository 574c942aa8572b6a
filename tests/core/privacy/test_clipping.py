"""Update clipping survives what crashes Flower's helpers: a zero update, integer arrays."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.supercore.differential_privacy import compute_clip_model_update

from fedsnn.core.privacy.clipping import add_gaussian_noise, clip_update, update_norm

REFERENCE = [np.ones((2, 3), np.float32), np.array([7], np.int64)]


def test_flowers_clipping_crashes_on_a_zero_update_and_on_integer_arrays() -> None:
    """The platform facts this module exists for (Flower 1.39)."""
    with pytest.raises(ZeroDivisionError):
        compute_clip_model_update([a.copy() for a in REFERENCE[:1]], REFERENCE[:1], 1.0)
    with pytest.raises(Exception):
        compute_clip_model_update([REFERENCE[0] * 3, np.array([9], np.int64)], REFERENCE, 1.0)


def test_a_zero_update_is_returned_unchanged() -> None:
    result = clip_update([a.copy() for a in REFERENCE], REFERENCE, clipping_norm=1.0)
    assert result.norm == 0.0 and not result.clipped
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(result.arrays, REFERENCE))


def test_integer_arrays_take_the_reference_value_and_floats_are_clipped() -> None:
    reply = [REFERENCE[0] + 2.0, np.array([12], np.int64)]
    result = clip_update(reply, REFERENCE, clipping_norm=1.0)
    assert result.clipped and result.norm == pytest.approx(2.0 * np.sqrt(6))
    assert result.arrays[1] == 7 and result.arrays[1].dtype == np.int64
    assert update_norm(result.arrays, REFERENCE) == pytest.approx(1.0, rel=1e-6)
    assert result.arrays[0].dtype == np.float32


def test_noise_goes_to_floating_arrays_only() -> None:
    out = add_gaussian_noise(REFERENCE, std=0.5, generator=np.random.default_rng(0))
    assert out[1] == 7 and out[1].dtype == np.int64
    assert out[0].dtype == np.float32 and not np.array_equal(out[0], REFERENCE[0])
