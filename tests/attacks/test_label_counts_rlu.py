"""RLU label counts: the least-squares fit of the head's update (attacks/label_counts_rlu.py)."""

import copy

import pytest
import torch

from attacks.label_counts import infer_label_counts
from attacks.label_counts_rlu import estimate_label_counts, rlu_label_counts
from attacks.settings import AttackSettings, AttackSettingsError
from attacks.types import LocalTraining, Observation
from fedsnn.core.data import load_dataset
from fedsnn.core.metrics import histogram, histogram_scores, round_to_total
from fedsnn.core.models import ModelSpec, build_model
from fedsnn.core.training import train_epochs


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", 28)


def _fedavg_observation(spec, model, x, y, *, optimizer, lr, epochs, batch):
    """What the server sees of a client that trained `model` on (x, y) (the real client code)."""
    sent = {k: v.detach().clone() for k, v in model.state_dict().items()}
    client = copy.deepcopy(model)
    train_epochs(client, x, y, epochs=epochs, batch_size=batch, lr=lr, optimizer=optimizer, seed=0)
    delta = {k: sent[k] - p.detach() for k, p in client.named_parameters()}
    training = LocalTraining("fedavg", optimizer, lr, 0.0, epochs, batch, len(x))
    return Observation("t", spec, sent, {}, batch_size=batch, learning_rate=lr, delta=delta,
                       training=training)


def _sample(digits, count, seed):
    ids = torch.randperm(len(digits.train_x), generator=torch.Generator().manual_seed(seed))[:count]
    return digits.train_x[ids], digits.train_y[ids]


@pytest.mark.parametrize("model_name", ["lenet", "lenet-snn"])
def test_one_sgd_step_on_an_untrained_model_gives_the_exact_histogram(digits, model_name):
    # one full-batch SGD step: u = N * mean softmax - counts, exact while the softmax hardly
    # depends on the input (a plain-initialised model), for the ANN and the SNN's readout alike
    spec = ModelSpec(model_name)
    for trial in range(3):
        x, y = _sample(digits, 16, trial)
        observation = _fedavg_observation(spec, build_model(spec, seed=trial), x, y,
                                          optimizer="sgd", lr=0.05, epochs=1, batch=16)
        counts = rlu_label_counts(observation)
        assert counts.sum() == 16 and counts.dtype == torch.long
        assert counts.tolist() == histogram(y, 10).tolist()


def test_several_sgd_mini_batches_of_a_dlg_initialised_lenet_beat_the_prior(digits):
    # the grid's SGD cell: N = 32, 4 steps of batch 8, DLG init (a softmax that moves fast in
    # the first steps: the straight-line estimate is off by ~0.2 in total variation here)
    spec = ModelSpec("lenet")
    rlu, dimitrov, uniform = [], [], []
    for client in range(3):
        x, y = _sample(digits, 32, 100 + client)
        observation = _fedavg_observation(spec, build_model(spec, seed=client, dlg_init=True),
                                          x, y, optimizer="sgd", lr=0.01, epochs=1, batch=8)
        truth = histogram(y, 10)
        rlu.append(histogram_scores(rlu_label_counts(observation), truth)["total-variation"])
        dimitrov.append(histogram_scores(infer_label_counts(observation), truth)["total-variation"])
        uniform.append(histogram_scores(round_to_total(torch.ones(10), 32), truth)
                       ["total-variation"])
    assert sum(rlu) / 3 <= 0.15
    assert sum(rlu) < sum(dimitrov) and sum(rlu) < sum(uniform)


def test_public_labelled_probe_and_adam_give_integer_counts_summing_to_n(digits):
    spec = ModelSpec("lenet")
    x, y = _sample(digits, 24, 7)
    observation = _fedavg_observation(spec, build_model(spec, seed=0, dlg_init=True), x, y,
                                      optimizer="adam", lr=0.003, epochs=2, batch=8)
    probe_x, probe_y = _sample(digits, 100, 8)  # stands in for public data
    for counts in (rlu_label_counts(observation),
                   rlu_label_counts(observation, probe=probe_x, probe_labels=probe_y),
                   rlu_label_counts(observation, rows="bias")):
        assert counts.dtype == torch.long and int(counts.sum()) == 24 and (counts >= 0).all()


def test_the_setting_selects_the_estimator_and_rejects_unknown_ones(digits):
    with pytest.raises(AttackSettingsError, match="`label_counts` to be one of") as error:
        AttackSettings(label_counts="oracle")
    assert "\n" not in str(error.value)
    assert AttackSettings().label_counts == "dimitrov"  # the default stays the audit's
    spec = ModelSpec("lenet")
    x, y = _sample(digits, 16, 3)
    observation = _fedavg_observation(spec, build_model(spec, seed=0), x, y,
                                      optimizer="sgd", lr=0.05, epochs=1, batch=16)
    assert torch.equal(estimate_label_counts(observation, "rlu"), rlu_label_counts(observation))
    assert torch.equal(estimate_label_counts(observation, "dimitrov"),
                       infer_label_counts(observation))
    assert estimate_label_counts(observation, "uniform").tolist() == [2, 2, 2, 2, 2, 2, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="label-count method"):
        estimate_label_counts(observation, "oracle")
    with pytest.raises(ValueError, match="`rows`"):
        rlu_label_counts(observation, rows="all")


def test_the_unrolled_attack_starts_from_the_selected_estimate(digits):
    # fixed labels: the reconstruction's histogram is the estimate the setting names
    from attacks.settings import unrolled_preset
    from attacks.unrolled import unrolled

    spec = ModelSpec("lenet")
    x, y = _sample(digits, 32, 100)
    observation = _fedavg_observation(spec, build_model(spec, seed=0, dlg_init=True), x, y,
                                      optimizer="sgd", lr=0.01, epochs=1, batch=8)
    expected = {m: estimate_label_counts(observation, m) for m in ("dimitrov", "rlu")}
    assert not torch.equal(expected["dimitrov"], expected["rlu"])  # else the test shows nothing
    for method, counts in expected.items():
        settings = unrolled_preset(iterations=1, learn_labels=False, label_counts=method)
        labels = unrolled(observation, settings, seed=0).labels
        assert histogram(labels, 10).tolist() == counts.tolist()
