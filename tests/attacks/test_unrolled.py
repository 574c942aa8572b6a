"""The unrolled FedAvg attack: shapes, labels from the inferred histogram, refusal without the
client's local training."""

import copy
from dataclasses import replace

import pytest
import torch

from attacks import (AttackSettings, AttackSettingsError, LocalTraining, Observation,
                     Reconstruction, Status, invert)
from attacks.settings import unrolled_preset
from attacks.unrolled import input_format, refine_reconstruction, unrolled, update_distance
from fedsnn.audit.baselines import image_guesses
from fedsnn.core.data import load_dataset
from fedsnn.core.image_format import resize
from fedsnn.core.metrics import identified, match_by_mse
from fedsnn.core.models import ModelSpec, build_model
from fedsnn.core.training import train_epochs

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


def _client_reply(x: torch.Tensor, y: torch.Tensor, *, epochs: int, optimizer: str, lr: float,
                  native_size: int | None = None) -> Observation:
    """A DLG-initialised lenet's reply after `epochs` full-batch steps of `optimizer` on (x, y)."""
    spec = ModelSpec("lenet")
    model = build_model(spec, seed=0, dlg_init=True)
    sent = {k: v.detach().clone() for k, v in model.state_dict().items()}
    client = copy.deepcopy(model)
    train_epochs(client, x, y, epochs=epochs, batch_size=len(x), lr=lr, optimizer=optimizer, seed=0)
    delta = {k: sent[k] - p.detach() for k, p in client.named_parameters()}
    return Observation("t", spec, sent, {k: d / (lr * epochs) for k, d in delta.items()},
                       batch_size=len(x), learning_rate=lr, local_steps=epochs,
                       exact_gradient=epochs == 1 and optimizer == "sgd", delta=delta,
                       native_size=native_size,
                       training=LocalTraining("fedavg", optimizer, lr, 0.0, epochs, len(x), len(x)))


def _sgd_reply(x: torch.Tensor, y: torch.Tensor, *, epochs: int,
               native_size: int | None = None) -> Observation:
    """A DLG-initialised lenet's reply after `epochs` full-batch SGD steps (lr 0.01) on (x, y)."""
    return _client_reply(x, y, epochs=epochs, optimizer="sgd", lr=0.01, native_size=native_size)


def test_unrolled_returns_n_images_with_the_inferred_labels_and_lowers_its_loss():
    observation, y = _observation()
    (reconstruction,) = invert([observation], SETTINGS)
    assert reconstruction.status == Status.OK, reconstruction.message
    assert reconstruction.inputs.shape == (4, 1, 28, 28)
    # one full-batch step of an untrained lenet: the histogram is read exactly
    assert sorted(reconstruction.labels.tolist()) == sorted(y.tolist())
    assert reconstruction.matching_loss < reconstruction.loss_history[0]


def test_learned_labels_start_on_the_estimate_and_come_back_as_one_label_per_dummy():
    observation, y = _observation()
    (reconstruction,) = invert([observation], unrolled_preset(iterations=5))
    assert reconstruction.status == Status.OK, reconstruction.message
    # five Adam steps of lr 0.1 cannot move a logit margin of 3: the exact estimate stays
    assert sorted(reconstruction.labels.tolist()) == sorted(y.tolist())


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


@pytest.mark.slow
def test_the_data_format_prior_identifies_more_digits_than_the_guesses_and_than_without_it():
    """8 digits, one full-batch SGD step of the DLG-initialised lenet: the unrolled attack with
    the dataset's native 8x8 resolution against the same attack without it and the guesses."""
    data = load_dataset("digits", 28)
    ids = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(1))[:8]
    x = data.train_x[ids]
    observation = _sgd_reply(x, data.train_y[ids], epochs=1, native_size=data.native_size)

    def rate(images: torch.Tensor) -> float:
        matched = images[match_by_mse(images, x)]
        return float(identified(matched, ids, data.train_x).float().mean())

    settings = unrolled_preset(iterations=200)
    (with_format,) = invert([observation], settings)
    (without,) = invert([replace(observation, native_size=None)], settings)
    guessed = max(rate(guess) for guess in image_guesses(data.train_x, x).values())
    assert rate(with_format.inputs) > max(guessed, rate(without.inputs)), (
        rate(with_format.inputs), rate(without.inputs), guessed)


def test_label_refinement_moves_wrongly_labelled_true_images_back_to_their_classes():
    """Given the client's own images with two of their labels wrong (a histogram 2 samples off),
    the refinement recovers every label from the update alone (4 full-batch SGD steps of a
    DLG-initialised lenet on 8 digits)."""
    data = load_dataset("digits", 28)
    x, y = data.train_x[:8], data.train_y[:8]
    observation = _sgd_reply(x, y, epochs=4)
    wrong = y.clone()
    wrong[[1, 5]] = (y[[1, 5]] + torch.tensor([3, 6])) % 10
    guess = Reconstruction("t", "unrolled", x.clone(), wrong, matching_loss=1.0)
    refined = refine_reconstruction(observation, guess, unrolled_preset())
    assert refined.labels.tolist() == y.tolist()
    assert refined.matching_loss < 1e-6 and "label refinement" in refined.message
    # without learned labels the attack keeps the histogram it was given
    assert refine_reconstruction(observation, guess, unrolled_preset(learn_labels=False)) is guess


def test_label_phases_split_the_steps_and_keep_one_history():
    observation, y = _observation()
    (one,) = invert([observation], unrolled_preset(iterations=12))
    (two,) = invert([observation], unrolled_preset(iterations=12, label_phases=2))
    assert two.status == Status.OK, two.message
    assert len(two.loss_history) == len(one.loss_history) == 12
    assert sorted(two.labels.tolist()) == sorted(y.tolist())
    assert two.loss_history[:6] == one.loss_history[:6]  # the same first phase
    assert "label refinement" in two.message


def test_a_smoothed_adam_phase_comes_first_and_the_reported_loss_is_the_clients_replay():
    """`adam_smoothing`: the first `adam_smoothing_steps` replay a smoothed Adam, the rest the
    client's own; every step is run, and the matching loss reported is the client's replay's."""
    x = torch.rand((4, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    observation = _client_reply(x, torch.tensor([1, 1, 7, 3]), epochs=2, optimizer="adam",
                                lr=0.003)
    settings = unrolled_preset(iterations=12, adam_smoothing=1.0, adam_smoothing_steps=8,
                               learn_labels=False)
    run = unrolled(observation, settings, seed=0)
    assert run.status == Status.OK and len(run.loss_history) == 12
    with torch.enable_grad():
        own = float(update_distance(observation, settings)(run.inputs, run.labels, False))
    assert run.matching_loss == pytest.approx(own, rel=1e-4)
    for bad in (dict(adam_smoothing=1.0), dict(adam_smoothing_steps=3),
                dict(adam_smoothing=1.0, adam_smoothing_steps=12)):
        with pytest.raises(AttackSettingsError, match="adam_smoothing"):
            unrolled_preset(iterations=12, **bad)
