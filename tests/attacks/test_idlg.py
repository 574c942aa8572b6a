"""iDLG: label inference from the last linear layer, and input recovery on a fresh LeNet."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from attacks import AttackSettings, Observation, Status, infer_labels, invert
from attacks.idlg import label_scores
from tests.attacks.victims import Victim, observe


@pytest.mark.parametrize("model_name", ["lenet", "lenet-snn"])
def test_label_inference_on_50_random_single_sample_gradients(
        model_name: str, digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, _ = digits
    generator = torch.Generator().manual_seed(7)
    correct = 0
    for trial in range(50):
        index = int(torch.randint(len(images), (1,), generator=generator))
        label = torch.randint(10, (1,), generator=generator)  # any label, not only the true one
        # half the victims with DLG's U(-0.5, 0.5) init, half with PyTorch's default init (where an
        # IF network's head often sees no spike at all and the bias fallback decides)
        observation = observe(model_name, images[index:index + 1], label, seed=trial,
                              dlg_init=trial % 2 == 0)
        correct += int(infer_labels(observation)[0] == label[0])
    assert correct == 50


def test_bias_gradient_decides_when_the_head_sees_no_spikes(
        victim: Callable[..., Victim]) -> None:
    observation, _, y = victim("lenet-snn", index=3)
    silent = dict(observation.gradients)
    silent["layers.fc.weight"] = torch.zeros_like(silent["layers.fc.weight"])
    observation = Observation(observation.target_id, observation.model_spec,
                              observation.global_state, silent)
    assert torch.equal(label_scores(observation), observation.gradients["layers.fc.bias"])
    assert infer_labels(observation).tolist() == y.tolist()


def test_batch_label_inference_returns_batch_size_labels(victim: Callable[..., Victim]) -> None:
    observation, _, y = victim("lenet", index=0, batch=3)
    labels = infer_labels(observation)
    assert labels.shape == (3,)
    assert set(labels.tolist()) <= set(range(10))


def test_idlg_recovers_a_real_digit_on_a_fresh_lenet(victim: Callable[..., Victim]) -> None:
    observation, x, y = victim("lenet", index=0, seed=0)
    (reconstruction,) = invert([observation], AttackSettings(attack="idlg", iterations=60, seed=0))
    assert reconstruction.status == Status.OK
    assert reconstruction.labels.tolist() == y.tolist()
    assert reconstruction.inputs.shape == x.shape
    assert float(((reconstruction.inputs - x) ** 2).mean()) < 1e-3
