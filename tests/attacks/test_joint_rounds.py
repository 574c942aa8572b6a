"""Several rounds of one client attacked jointly (attacks/unrolled.py, `other_rounds`): the
dummies match every round's update at once; rounds of another local training are refused."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from attacks import LocalTraining, Observation, Status
from attacks.settings import AttackSettings, unrolled_preset
from attacks.unrolled import rounds_distance, unrolled, update_distance
from fedsnn.core.models import ModelSpec, build_model
from fedsnn.core.training import train_epochs

X = torch.rand((4, 1, 28, 28), generator=torch.Generator().manual_seed(0))
Y = torch.tensor([1, 7, 3, 1])


def _rounds(count: int) -> list[Observation]:
    """One client's replies in `count` rounds on (X, Y): full-batch SGD, each round from the
    previous round's result."""
    spec = ModelSpec("lenet")
    model = build_model(spec, seed=0, dlg_init=True)
    training = LocalTraining("fedavg", "sgd", 0.1, 0.0, 2, 4, 4)
    replies = []
    for round_ in range(count):
        sent = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model = copy.deepcopy(model)
        train_epochs(model, X, Y, epochs=2, batch_size=4, lr=0.1, optimizer="sgd", seed=round_)
        delta = {k: sent[k] - p.detach() for k, p in model.named_parameters()}
        replies.append(Observation(f"r{round_}", spec, sent, {k: d / 0.2 for k, d in delta.items()},
                                   batch_size=4, learning_rate=0.1, local_steps=2,
                                   exact_gradient=False, delta=delta, training=training))
    return replies


def test_the_rounds_distance_is_the_mean_of_each_rounds_own():
    first, second = _rounds(2)
    settings = AttackSettings(attack="unrolled", distance="cosine")
    noise = torch.rand(X.shape, generator=torch.Generator().manual_seed(1))
    with torch.enable_grad():
        each = [float(update_distance(o, settings)(noise, Y, False)) for o in (first, second)]
        joint = float(rounds_distance([first, second], settings)(noise, Y, False))
        truth = float(rounds_distance([first, second], settings)(X, Y, False))
    assert each[0] != pytest.approx(each[1])  # the rounds' weights differ
    assert joint == pytest.approx(sum(each) / 2)
    assert truth < 1e-9  # the client's samples explain both rounds at once


def test_a_joint_attack_returns_the_samples_once_and_refuses_another_training():
    first, second = _rounds(2)
    settings = unrolled_preset(iterations=10)
    reconstruction = unrolled(first, settings, seed=0, other_rounds=[second])
    assert reconstruction.status == Status.OK, reconstruction.message
    assert reconstruction.inputs.shape == X.shape
    other = replace(second, training=replace(second.training, num_examples=8))
    with pytest.raises(ValueError, match="same local training"):
        unrolled(first, settings, seed=0, other_rounds=[other])
