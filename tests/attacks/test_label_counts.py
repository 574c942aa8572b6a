"""Label-count inference from an update's last-layer bias change."""

import copy

import pytest
import torch

from attacks.label_counts import infer_label_counts, labels_from_counts
from attacks.types import LocalTraining, Observation
from fedsnn.core.training import batch_gradient, train_epochs
from fedsnn.core.data import load_dataset
from fedsnn.core.metrics import histogram, histogram_scores, round_to_total
from fedsnn.core.models import ModelSpec, build_model


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", 28)


def _fedsgd_observation(spec, model, x, y, lr=0.1):
    sent = {k: v.detach().clone() for k, v in model.state_dict().items()}
    _, gradients = batch_gradient(copy.deepcopy(model), x, y)
    # the attacker's observation: the update, not the client's data
    return Observation("t", spec, sent, gradients, batch_size=len(x), learning_rate=lr,
                       delta={k: lr * g for k, g in gradients.items()},
                       training=LocalTraining("gradient", "sgd", lr, 0.0, 1, len(x), len(x)))


@pytest.mark.parametrize("batch", [1, 2, 8, 32])
def test_counts_are_exact_on_fedsgd_batches_of_lenet(digits, batch):
    spec = ModelSpec("lenet")
    generator = torch.Generator().manual_seed(batch)
    for trial in range(5):
        model = build_model(spec, seed=trial)
        ids = torch.randperm(len(digits.train_x), generator=generator)[:batch]
        x, y = digits.train_x[ids], digits.train_y[ids]
        counts = infer_label_counts(_fedsgd_observation(spec, model, x, y))
        assert counts.tolist() == histogram(y, 10).tolist()


def test_one_fedavg_epoch_in_one_batch_of_sgd_is_exact_and_beats_the_prior(digits):
    spec = ModelSpec("lenet")
    model = build_model(spec, seed=0)
    sent = {k: v.detach().clone() for k, v in model.state_dict().items()}
    x, y = digits.train_x[:32], digits.train_y[:32]
    client = copy.deepcopy(model)
    train_epochs(client, x, y, epochs=1, batch_size=32, lr=0.05, optimizer="sgd", seed=0)
    delta = {k: sent[k] - p.detach() for k, p in client.named_parameters()}
    observation = Observation("t", spec, sent, {}, batch_size=32, learning_rate=0.05, delta=delta,
                              training=LocalTraining("fedavg", "sgd", 0.05, 0.0, 1, 32, 32))
    truth = histogram(y, 10)
    inferred = histogram_scores(infer_label_counts(observation), truth)
    prior = histogram_scores(round_to_total(histogram(digits.train_y, 10).double(), 32), truth)
    assert inferred["all-exact"] == 1.0 and inferred["total-variation"] == 0.0
    assert prior["total-variation"] > 0.1


def test_labels_from_counts_lists_each_class_count_times():
    assert labels_from_counts(torch.tensor([2, 0, 1])).tolist() == [0, 0, 2]
