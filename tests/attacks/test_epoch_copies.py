"""Epoch-order-invariant replay (attacks/epoch_copies.py): the per-epoch copies can express the
client's true reshuffled batches, which one tied set of dummies cannot; the copies are matched and
merged back to N samples."""

from __future__ import annotations

import copy

import torch

from attacks import LocalTraining, Observation, Status, invert
from attacks.epoch_copies import (aligned, copies_apply, copy_batches, invariance_prior, layout,
                                  match_to_first)
from attacks.settings import AttackSettings, unrolled_preset
from attacks.unrolled import update_distance
from fedsnn.core.models import ModelSpec, build_model
from fedsnn.core.sampling import epoch_batches
from fedsnn.core.training import train_epochs

N, BATCH, EPOCHS, SHUFFLE = 4, 2, 2, 3


def _minibatch_reply() -> tuple[Observation, torch.Tensor, torch.Tensor]:
    """A lenet's reply after 2 epochs of 2 shuffled SGD batches; the server lacks the seed."""
    spec = ModelSpec("lenet")
    model = build_model(spec, seed=0, dlg_init=True)
    sent = {k: v.detach().clone() for k, v in model.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    x, y = torch.rand((N, 1, 28, 28), generator=generator), torch.tensor([1, 7, 3, 1])
    client = copy.deepcopy(model)
    train_epochs(client, x, y, epochs=EPOCHS, batch_size=BATCH, lr=0.1, optimizer="sgd",
                 seed=SHUFFLE)
    delta = {k: sent[k] - p.detach() for k, p in client.named_parameters()}
    training = LocalTraining("fedavg", "sgd", 0.1, 0.0, EPOCHS, BATCH, N)
    observation = Observation("t", spec, sent, {k: d / 0.4 for k, d in delta.items()},
                              batch_size=BATCH, learning_rate=0.1, local_steps=4,
                              exact_gradient=False, delta=delta, training=training)
    return observation, x, y


def test_the_copies_replay_the_true_reshuffled_batches_where_tied_dummies_cannot():
    observation, x, y = _minibatch_reply()
    settings = AttackSettings(attack="unrolled", distance="cosine")
    true_visits = torch.cat(epoch_batches(N, epochs=EPOCHS, batch_size=BATCH, seed=SHUFFLE))
    assert not torch.equal(true_visits, torch.arange(N).repeat(EPOCHS))  # really reshuffled
    copies = update_distance(observation, settings, batches=copy_batches(observation.training))
    tied = update_distance(observation, settings)
    with torch.enable_grad():
        exact = float(copies(x[true_visits], y[true_visits], False))
        best_tied = float(tied(x, y, False))
    assert exact < 1e-9 < 1e-4 < best_tied


def test_copies_are_matched_to_the_first_and_merged_back():
    generator = torch.Generator().manual_seed(1)
    samples, labels = torch.rand((5, 1, 3, 3), generator=generator), torch.tensor([0, 1, 1, 2, 0])
    shuffles = torch.stack([torch.arange(5), torch.tensor([3, 0, 4, 2, 1])])
    copies = torch.stack([samples[s] for s in shuffles])
    copies[1] += 0.01 * torch.randn(copies[1].shape, generator=generator)  # near, not equal
    perm = match_to_first(copies, torch.stack([labels[s] for s in shuffles]))
    assert torch.equal(perm[0], torch.arange(5))
    assert torch.equal(shuffles[1][perm[1]], torch.arange(5))  # copy 1's sample i is sample i
    assert torch.allclose(aligned(copies, perm).mean(0), samples, atol=0.01)
    assert float(invariance_prior(copies, perm)) < 1e-4
    assert float(invariance_prior(copies, torch.arange(5).repeat(2, 1))) > 1e-2
    # position e*N + j of the replay holds merged sample layout[e*N + j]
    assert torch.equal(layout(perm), torch.cat([torch.arange(5), shuffles[1]]))


def test_copies_apply_only_where_the_batch_composition_is_unknown():
    def training(**changes):
        base = dict(update_mode="fedavg", optimizer="sgd", learning_rate=0.1, momentum=0.0,
                    epochs=2, batch_size=2, num_examples=4)
        return LocalTraining(**{**base, **changes})
    assert copies_apply(training())
    assert not copies_apply(training(epochs=1))
    assert not copies_apply(training(batch_size=4))      # full batch: one composition
    assert not copies_apply(training(shuffle_seed=7))    # the seed gives the true batches
    assert not copies_apply(training(update_mode="gradient"))


def test_the_attack_with_copies_returns_the_merged_n_samples():
    observation, _, y = _minibatch_reply()
    settings = unrolled_preset(iterations=12, epoch_prior=1.0)
    (reconstruction,) = invert([observation], settings)
    assert reconstruction.status == Status.OK, reconstruction.message
    assert reconstruction.inputs.shape == (N, 1, 28, 28)
    assert reconstruction.labels.shape == (N,)
    assert reconstruction.matching_loss < 1.0  # 1 - cosine of the merged samples' replay
