"""Reconstruction metrics against hand-computed references."""

from __future__ import annotations

import math

import pytest
import torch

from fedsnn.core.metrics import (image_scores, label_accuracy, match_by_mse, mean_interval,
                            per_sample_scores, spike_l1, spike_l2, to_images, wilson_interval)


def test_identical_images_score_perfectly_and_finitely() -> None:
    x = torch.rand(3, 1, 28, 28)
    scores = per_sample_scores(x, x)
    assert torch.all(scores["mse"] == 0)
    assert torch.all(scores["psnr"] == 100.0)  # capped, not inf
    assert torch.allclose(scores["ssim"], torch.ones(3))


def test_mse_and_psnr_match_their_definitions() -> None:
    x = torch.zeros(2, 1, 8, 8)
    scores = image_scores(x + 0.1, x)
    assert scores["mse"] == pytest.approx(0.01)
    assert scores["psnr"] == pytest.approx(20.0, abs=1e-4)  # 10 log10(1 / 0.01)


def test_ssim_is_lower_for_noise_than_for_a_small_shift() -> None:
    x = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    noisy = per_sample_scores(torch.rand(1, 1, 28, 28), x)["ssim"]
    close = per_sample_scores((x + 0.02).clamp(0, 1), x)["ssim"]
    assert float(close) > 0.9 > float(noisy)


def test_reconstructions_are_clipped_to_the_pixel_range() -> None:
    x = torch.zeros(1, 1, 8, 8)
    assert per_sample_scores(x - 5.0, x)["mse"].item() == 0.0


def test_hungarian_matching_undoes_a_permutation() -> None:
    truth = torch.rand(5, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    permutation = torch.tensor([3, 0, 4, 1, 2])
    order = match_by_mse(truth[permutation], truth)
    assert torch.equal(truth[permutation][order], truth)


def test_wilson_interval_reference_values() -> None:
    low, high = wilson_interval(88, 100)  # by hand: centre 0.86595, half-width 0.06407
    assert (round(low, 4), round(high, 4)) == (0.8019, 0.9300)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_mean_interval_and_label_accuracy() -> None:
    mean, low, high = mean_interval([1.0, 2.0, 3.0, float("nan")])
    assert mean == 2.0 and low == pytest.approx(2 - 1.959964 / math.sqrt(3))
    assert math.isnan(mean_interval([])[0])
    assert label_accuracy(torch.tensor([1, 2, 3, 4]), [1, 2, 0, 4]) == 0.75


def test_spike_distances_per_sample() -> None:
    a = torch.zeros(4, 2, 1, 3, 3)  # [T, B, C, H, W]
    b = a.clone()
    b[:, 1] = 1.0
    assert spike_l1(a, b).tolist() == [0.0, 36.0]
    assert spike_l2(a, b).tolist() == [0.0, 6.0]


def test_to_images_averages_time_steps() -> None:
    spikes = torch.zeros(4, 2, 1, 3, 3)
    spikes[:2] = 1.0
    assert torch.equal(to_images(spikes), torch.full((2, 1, 3, 3), 0.5))
    assert to_images(torch.ones(2, 1, 3, 3)).shape == (2, 1, 3, 3)


def test_ssim_on_colour_sees_every_channel() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    only_blue = x.clone()
    only_blue[:, 2] = torch.rand(2, 32, 32)  # red and green untouched
    scores = image_scores(only_blue, x)
    assert image_scores(x, x)["ssim"] == pytest.approx(1.0)
    assert scores["ssim"] < 0.8 and scores["mse"] > 0.01
