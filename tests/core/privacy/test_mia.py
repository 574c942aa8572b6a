"""Membership-inference audit: AUC ≈ 0.5 when members and non-members are two disjoint samples of
one distribution the model never saw, clearly above 0.5 on an overfit model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fedsnn.core.data import load_dataset
from fedsnn.core.models import ModelSpec, build_model
from fedsnn.core.privacy.mia import audit_membership, threshold_attack


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", 16)


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for i in range(0, len(x), 16):
            opt.zero_grad()
            F.cross_entropy(model(x[i:i + 16]), y[i:i + 16]).backward()
            opt.step()


def test_two_disjoint_samples_of_one_distribution_give_auc_near_one_half(digits) -> None:
    model = build_model(ModelSpec("lenet", image_size=16), seed=0)
    train(model, digits.train_x[:300], digits.train_y[:300], epochs=5)
    members = (digits.train_x[400:800], digits.train_y[400:800])      # never trained on
    nonmembers = (digits.train_x[800:1200], digits.train_y[800:1200])
    result = audit_membership(model, members, nonmembers)
    assert abs(result.auc - 0.5) < 0.07, result
    assert abs(result.balanced_accuracy - 0.5) < 0.07, result


def test_an_overfit_model_leaks_membership(digits) -> None:
    model = build_model(ModelSpec("lenet", image_size=16), seed=0)
    members = (digits.train_x[:64], digits.train_y[:64])
    train(model, *members, epochs=150)
    nonmembers = (digits.test_x[:200], digits.test_y[:200])
    result = audit_membership(model, members, nonmembers)
    assert result.auc > 0.7, result
    assert result.balanced_accuracy > 0.6, result
    assert result.num_members == 32 and result.fpr_resolution == pytest.approx(0.01)


def test_the_threshold_comes_from_the_reference_scores_only() -> None:
    reference_in, reference_out = np.array([2.0, 3.0]), np.array([0.0, 1.0])
    # scored sets that a threshold fitted on them would separate perfectly at 10
    result = threshold_attack(reference_members=reference_in, reference_nonmembers=reference_out,
                              members=np.array([11.0, 12.0]), nonmembers=np.array([9.0, 9.5]))
    assert result.threshold == 2.0 and result.auc == 1.0
    assert result.balanced_accuracy == 0.5  # the reference threshold calls every scored one in
