"""The unrolled attack's opt-in speed options (issue 29's speed target): warm steps on a
one-epoch replay, and a start from public class means (attacks/unrolled.py)."""

from __future__ import annotations

import sys

import pytest
import torch

from attacks import AttackSettingsError, PublicData

from attacks.rate_decoder import CapabilityError
from attacks.settings import unrolled_preset
from attacks.types import Status
from attacks.unrolled import first_epoch, public_start, unrolled, warm_applies
from fedsnn.core.image_format import resize
from tests.attacks.test_unrolled import _sgd_reply


def _reply(epochs: int = 3, native_size: int | None = None):
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((4, 1, 28, 28), generator=generator)
    return _sgd_reply(x, torch.tensor([1, 1, 7, 3]), epochs=epochs, native_size=native_size)


@pytest.mark.parametrize("changes, field", [(dict(warm_steps=10, iterations=10), "warm_steps"),
                                            (dict(warm_steps=-1), "warm_steps"),
                                            (dict(warm_steps=5, distance="l2"), "warm_steps")])
def test_invalid_warm_steps_name_the_field(changes: dict, field: str) -> None:
    with pytest.raises(AttackSettingsError, match=field):
        unrolled_preset(iterations=20).with_(**changes)


def test_warm_steps_replay_one_epoch_first_then_every_epoch(monkeypatch) -> None:
    observation = _reply(epochs=3)
    replayed = []
    unrolled_module = sys.modules["attacks.unrolled"]  # the package re-exports the function
    real = unrolled_module.simulate_update

    def spy(model, params, x, y, training, **kwargs):
        replayed.append(len(kwargs["batches"]))  # full-batch: one batch per epoch
        return real(model, params, x, y, training, **kwargs)

    monkeypatch.setattr(unrolled_module, "simulate_update", spy)
    settings = unrolled_preset(iterations=10, warm_steps=6)
    reconstruction = unrolled(observation, settings, seed=0)
    assert reconstruction.status == Status.OK, reconstruction.message
    assert len(reconstruction.loss_history) == 10
    cut = replayed.index(3)
    # 6 warm steps and the warm phase's final loss on one epoch, everything after on three
    assert replayed[:cut] == [1] * 7 and set(replayed[cut:]) == {3}
    assert first_epoch(observation).delta is observation.delta
    assert not warm_applies(_reply(epochs=1), settings)


def test_the_public_start_is_each_labels_public_mean_at_the_native_size() -> None:
    observation = _reply(native_size=8)
    settings = unrolled_preset(iterations=5, public_init=True)
    public_images = torch.rand((6, 1, 28, 28), generator=torch.Generator().manual_seed(1))
    public = PublicData(public_images, "test", labels=torch.tensor([1, 1, 7, 7, 3, 3]))
    labels = torch.tensor([7, 1, 1, 3])
    start = public_start(observation, settings, labels, public, seed=0)
    means = {c: resize(public_images[public.labels == c], 8).mean(0) for c in (1, 3, 7)}
    assert start.shape == (4, 1, 8, 8)
    for i, label in enumerate(labels.tolist()):
        assert torch.allclose(start[i], means[label], atol=0.05)
    assert not torch.equal(start[1], start[2])  # same class, different noise
    with pytest.raises(CapabilityError, match="public"):
        unrolled(observation, settings, seed=0)
    (run,) = [unrolled(observation, settings, seed=0, public=public)]
    assert run.status == Status.OK and run.inputs.shape == (4, 1, 28, 28)
