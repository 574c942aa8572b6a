"""The unrolled FedAvg attack: shapes, labels from the inferred histogram, refusal without the
client's local training."""

import copy
from dataclasses import replace

import torch

from attacks import AttackSettings, LocalTraining, Observation, Status, invert
from attacks.unrolled import input_format
from fedsnn.image_format import resize
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


def test_the_data_format_puts_the_dummies_at_the_native_size_only_when_it_is_smaller():
    observation, _ = _observation()
    assert input_format(observation) is None  # withheld (or unknown): full-size dummies
    assert input_format(replace(observation, native_size=28)) is None  # MNIST: nothing to gain
    (reconstruction,) = invert([replace(observation, native_size=8)],
                               SETTINGS.with_(iterations=3))
    assert reconstruction.inputs.shape == (4, 1, 28, 28)
    assert _is_upsampled(reconstruction.inputs)  # what the dataset's resize makes of 8x8 images
    (full,) = invert([observation], SETTINGS.with_(iterations=3))
    assert not _is_upsampled(full.inputs)


def _is_upsampled(images: torch.Tensor) -> bool:
    """Whether `images` equal resize(z, 28) for some 8x8 z (least squares through the linear map)."""
    basis = resize(torch.eye(64).reshape(64, 1, 8, 8), 28).reshape(64, -1)  # [64, 784]
    flat = images.reshape(len(images), -1)
    z = torch.linalg.lstsq(basis.T, flat.T).solution  # [64, N]
    return bool(torch.allclose(basis.T @ z, flat.T, atol=1e-4))
