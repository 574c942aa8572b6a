"""Clustered intervals: wider than Wilson when clients differ, never narrower."""

from __future__ import annotations

import pytest

from fedsnn.core.metrics import clustered_rate_stat, wilson_interval


def test_clients_that_differ_widen_the_interval_past_wilson() -> None:
    # 4 clients of 32 images: two fully identified, two not at all (pooled 50 %)
    stat = clustered_rate_stat([32, 32, 0, 0], [32, 32, 32, 32])
    low, high = wilson_interval(64, 128)
    assert stat["value"] == pytest.approx(0.5)
    assert stat["low"] < low - 0.1 and stat["high"] > high + 0.1
    assert stat["clusters"] == 4 and stat["trials"] == 128


def test_identical_clients_keep_the_wilson_interval() -> None:
    stat = clustered_rate_stat([3, 3, 3], [10, 10, 10])
    assert (stat["low"], stat["high"]) == pytest.approx(wilson_interval(9, 30))


def test_reproducible_and_checked() -> None:
    assert clustered_rate_stat([1, 5, 9], [10, 10, 10]) == clustered_rate_stat([1, 5, 9], [10, 10, 10])
    with pytest.raises(ValueError, match="successes <= trials"):
        clustered_rate_stat([11], [10])
