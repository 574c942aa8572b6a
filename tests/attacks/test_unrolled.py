"""The unrolled FedAvg attack: shapes, labels from the inferred histogram, refusal without the
client's local training."""

import copy

import torch

from attacks import AttackSettings, LocalTraining, Observation, Status, invert
from fedsnn.models import ModelSpec, build_model
from fedsnn.training import train_epochs

SETTINGS = AttackSettings(attack="unrolled", optimizer="adam", lr=0.1, distance="cosine",
                          iterations=30)


def _observation(with_training: bool = True) -> tuple[Observation, torch.Tensor]:
    spec = ModelSpec("lenet")
    model = build_model(spec, seed=0)
    sent = {k: v.detach().clone() for k, v in model.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    x, y = torch.rand((4, 1, 28, 28), generator=generator), torch.tensor([1, 1, 7, 3])
    client = copy.deepcopy(model)
    train_epochs(client, x, y, epochs=1, batch_size=4, lr=0.1, optimizer="sgd", seed=0)
    delta = {k: sent[k] - p.detach() for k, p in client.named_parameters()}
    training = LocalTraining("fedavg", "sgd", 0.1, 0.0, 1, 4, 4) if with_training else None
    observation = Observation("t", spec, sent, {k: d / 0.1 for k, d in delta.items()},
                              batch_size=4, learning_rate=0.1, local_steps=1,
                              exact_gradient=False, delta=delta, training=training)
    return observation, y


def test_unrolled_returns_n_images_with_the_inferred_labels_and_lowers_its_loss():
    observation, y = _observation()
    (reconstruction,) = invert([observation], SETTINGS)
    assert reconstruction.status == Status.OK, reconstruction.message
    assert reconstruction.inputs.shape == (4, 1, 28, 28)
    # one full-batch step of an untrained lenet: the histogram is read exactly
    assert sorted(reconstruction.labels.tolist()) == sorted(y.tolist())
    assert reconstruction.matching_loss < reconstruction.loss_history[0]


def test_unrolled_without_the_local_training_fails_with_a_reason():
    observation, _ = _observation(with_training=False)
    (reconstruction,) = invert([observation], SETTINGS)
    assert reconstruction.status == Status.FAILED
    assert "local training" in reconstruction.message
