"""Restarts merged by consensus (attacks/consensus.py, `AttackSettings.consensus_restarts`):
the runs aligned and averaged, then more free-pixel steps from the average."""

from __future__ import annotations

import importlib

import pytest
import torch

from attacks import AttackSettingsError
from attacks.consensus import aligned_mean, anchor_run
from attacks.settings import unrolled_preset
from attacks.types import Reconstruction, Status
from attacks.unrolled import unrolled
from attacks.unrolled_batched import supports
from tests.attacks.test_unrolled import _sgd_reply


def _run(images: list[list[float]], loss: float) -> Reconstruction:
    return Reconstruction("t", "unrolled", torch.tensor(images).view(len(images), 1, 1, -1),
                          torch.zeros(len(images), dtype=torch.long), matching_loss=loss)


def _reply():
    x = torch.rand((2, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    return _sgd_reply(x, torch.tensor([1, 7]), epochs=1)


def test_runs_are_aligned_to_the_lowest_loss_run_before_they_are_averaged() -> None:
    low = _run([[1.0, 0.0], [0.0, 1.0]], loss=0.1)
    high = _run([[0.0, 0.8], [0.6, 0.0]], loss=0.5)  # the same two samples, in the other order
    assert anchor_run([high, low]) is low
    assert torch.allclose(aligned_mean([high, low]).flatten(1),
                          torch.tensor([[0.8, 0.0], [0.0, 0.9]]))
    with pytest.raises(ValueError, match="at least one run"):
        aligned_mean([])


@pytest.mark.parametrize("changes", [dict(consensus_restarts=0),
                                     dict(consensus_restarts=2, consensus_steps=-1),
                                     dict(consensus_steps=5),
                                     dict(consensus_restarts=2, restarts=2)])
def test_invalid_consensus_settings_name_the_field(changes: dict) -> None:
    with pytest.raises(AttackSettingsError, match="consensus_restarts"):
        unrolled_preset(iterations=5, **changes)


def test_the_consensus_is_the_mean_of_the_seeds_runs() -> None:
    observation = _reply()
    settings = unrolled_preset(iterations=10, learn_labels=False)
    runs = [unrolled(observation, settings, seed=seed) for seed in (3, 4)]
    merged = unrolled(observation, settings.with_(consensus_restarts=2), seed=3)
    assert merged.status == Status.OK and "consensus of 2 runs" in merged.message
    assert torch.allclose(merged.inputs, aligned_mean(runs))
    assert len(merged.loss_history) == 20 == settings.with_(consensus_restarts=2).planned_steps
    assert not supports(settings.with_(consensus_restarts=2))


def test_steps_from_the_consensus_run_every_planned_step_and_lower_its_loss() -> None:
    observation = _reply()
    settings = unrolled_preset(iterations=10, learn_labels=False, consensus_restarts=2)
    average = unrolled(observation, settings, seed=0)
    resumed = unrolled(observation, settings.with_(consensus_steps=100), seed=0)
    assert resumed.status == Status.OK
    assert len(resumed.loss_history) == 120 == settings.with_(consensus_steps=100).planned_steps
    assert resumed.loss_history[:20] == average.loss_history
    assert resumed.matching_loss < average.matching_loss
    assert resumed.labels.tolist() == average.labels.tolist()  # held at the anchor run's


def test_an_unfinished_run_ends_the_consensus_with_every_step_taken(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """When the second run times out, the consensus returns it (a lower bound, status kept) and
    its history holds the first run's steps too."""
    module = importlib.import_module("attacks.unrolled")  # the package exports a function of that name
    original = module.unrolled

    def second_times_out(observation, settings, *, seed, **kwargs):
        run = original(observation, settings, seed=seed, **kwargs)
        if settings.consensus_restarts == 1 and seed == 1:
            run.status, run.loss_history = Status.TIMEOUT, run.loss_history[:4]
        return run

    monkeypatch.setattr(module, "unrolled", second_times_out)
    settings = unrolled_preset(iterations=10, learn_labels=False, consensus_restarts=2,
                               consensus_steps=5)
    run = original(_reply(), settings, seed=0)
    assert run.status == Status.TIMEOUT
    assert len(run.loss_history) == 14
