"""experiments/readout_oracle: each class read from its samples' summed readout features."""

import torch

from attacks.rate_decoder import Decoder, public_features
from experiments.readout_oracle import class_sums, oracle_reading, row_values, with_class
from fedsnn.core.models import ModelSpec, build_model

CLASSES = 10


def _decoder(features: int, seed: int) -> Decoder:
    torch.manual_seed(seed)
    return Decoder(torch.zeros(features + CLASSES), torch.ones(features + CLASSES), 16,
                   (1, 28, 28)).eval()


def test_a_class_seen_twice_is_its_summed_features_decoded_and_given_twice():
    model = build_model(ModelSpec("lenet-snn"), seed=0, dlg_init=True).train()
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([3, 7, 3, 1, 1])
    features = public_features(model, x)
    decoders = {1: _decoder(features.shape[1], 1), 2: _decoder(features.shape[1], 2)}

    reading = oracle_reading(model, decoders, x, y, CLASSES)

    assert reading.labels.tolist() == [1, 1, 3, 3, 7]
    with torch.no_grad():
        expected_3 = decoders[2](with_class(features[[0, 2]].sum(0, keepdim=True),
                                            torch.tensor([3]), CLASSES))[0]
        expected_7 = decoders[1](with_class(features[[1]], torch.tensor([7]), CLASSES))[0]
    assert torch.allclose(reading.inputs[2], expected_3)
    assert torch.allclose(reading.inputs[3], expected_3)
    assert torch.allclose(reading.inputs[4], expected_7)


def test_a_class_seen_more_often_than_the_largest_decoder_uses_the_largest():
    model = build_model(ModelSpec("lenet-snn"), seed=0, dlg_init=True).train()
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([4, 4, 4])
    features = public_features(model, x)
    decoders = {1: _decoder(features.shape[1], 1), 2: _decoder(features.shape[1], 2)}

    reading = oracle_reading(model, decoders, x, y, CLASSES)

    with torch.no_grad():
        expected = decoders[2](with_class(features.sum(0, keepdim=True), torch.tensor([4]),
                                          CLASSES))[0]
    assert all(torch.allclose(image, expected) for image in reading.inputs)


def test_the_decoders_learn_from_sums_of_same_class_samples():
    features = torch.arange(12.0).view(6, 2)
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    images = torch.arange(6.0).view(6, 1, 1, 1)  # image i holds the value i

    inputs, members = class_sums(features, labels, images, 2, 20, 2,
                                 torch.Generator().manual_seed(0))

    assert inputs.shape == (20, 2 + 2) and members.shape == (20, 2, 1, 1, 1)
    for row, pair in zip(inputs, members):
        picked = pair.flatten().long()
        assert labels[picked[0]] == labels[picked[1]] and picked[0] != picked[1]
        assert torch.equal(row[:2], features[picked].sum(0))
        assert row[2 + int(labels[picked[0]])] == 1


def test_after_one_adam_step_every_row_entry_moved_by_the_full_rate_or_not_at_all():
    model = build_model(ModelSpec("lenet"), seed=0, dlg_init=True).train()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 0, 5, 9])

    values = row_values(model, x, y, steps=1, seed=0)

    assert len(values) == 3 * 588  # the three classes present, lenet's 588 readout inputs
    moved = values > 1e-3
    assert moved.float().mean() > 0.5
    assert torch.allclose(values[moved], torch.ones(int(moved.sum())), atol=1e-3)
