"""The unrolled attack's learned prior (attacks/latent_prior.py): dummies as the outputs of a
decoder trained on public images, the search in its latent space; public-data only."""

from __future__ import annotations

import importlib

import pytest
import torch

from attacks import AttackSettingsError, PublicData
from attacks.latent_prior import latent_start, public_autoencoder, swap_codes
from attacks.rate_decoder import CapabilityError
from attacks.settings import unrolled_preset
from attacks.types import Status
from attacks.unrolled import replay_loss, unrolled
from attacks.unrolled_batched import supports
from tests.attacks.test_unrolled import _sgd_reply


def _public(n: int = 24) -> PublicData:
    generator = torch.Generator().manual_seed(3)
    return PublicData(torch.rand((n, 1, 28, 28), generator=generator), "test",
                      labels=torch.arange(n) % 10)


def _reply():
    x = torch.rand((2, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    return _sgd_reply(x, torch.tensor([1, 7]), epochs=1)


@pytest.mark.parametrize("changes", [dict(public_prior="gan"),
                                     dict(public_prior="decoder", public_init=True),
                                     dict(public_prior="decoder", epoch_prior=1.0),
                                     dict(prior_pixel_steps=2),
                                     dict(public_prior="decoder", prior_pixel_steps=5),
                                     dict(public_prior="decoder", prior_anchor_weight=0.1),
                                     dict(public_prior="decoder", prior_pixel_steps=2,
                                          prior_anchor_weight=-1.0),
                                     dict(prior_code_swaps=4),
                                     dict(public_prior="decoder", prior_latent_refine=False),
                                     dict(public_prior="decoder", prior_pixel_lr=0.01),
                                     dict(public_prior="decoder", prior_pixel_steps=2,
                                          prior_pixel_lr=0.0)])
def test_invalid_public_prior_settings_name_the_field(changes: dict) -> None:
    with pytest.raises(AttackSettingsError, match="public_prior|prior_pixel_steps|prior_anchor_weight|prior_code_swaps|prior_latent_refine|prior_pixel_lr"):
        unrolled_preset(iterations=5, **changes)


def test_the_prior_needs_public_images_and_the_stacked_engine_declines_it() -> None:
    settings = unrolled_preset(iterations=5, public_prior="decoder")
    with pytest.raises(CapabilityError, match="public"):
        unrolled(_reply(), settings, seed=0)
    assert not supports(settings) and supports(unrolled_preset(iterations=5))


def test_the_dummies_are_decoder_outputs_from_public_codes_of_their_classes() -> None:
    observation, public = _reply(), _public()
    # a vanishing learning rate: the dummies stay the decoded starting codes
    settings = unrolled_preset(iterations=2, public_prior="decoder", lr=1e-12,
                               learn_labels=False)
    run = unrolled(observation, settings, seed=0, public=public)
    autoencoder = public_autoencoder(public, 1, 28)
    start = latent_start(autoencoder, public, run.labels, side=28, seed=0)  # fixed labels
    with torch.no_grad():
        decoded = autoencoder.decode(start)
    assert run.status == Status.OK
    assert torch.allclose(run.inputs, decoded, atol=1e-5)
    assert bool((run.inputs > 0).all() and (run.inputs < 1).all())  # the sigmoid's range


def test_the_latent_search_lowers_the_matching_loss() -> None:
    settings = unrolled_preset(iterations=50, public_prior="decoder", learn_labels=False)
    run = unrolled(_reply(), settings, seed=0, public=_public())
    history = run.loss_history
    assert run.status == Status.OK and len(history) == 50
    assert min(history) < 0.5 * history[0]


def test_latent_then_pixels_runs_every_step_and_leaves_the_decoders_range() -> None:
    observation, public = _reply(), _public()
    settings = unrolled_preset(iterations=30, public_prior="decoder", prior_pixel_steps=10,
                               learn_labels=False)
    run = unrolled(observation, settings, seed=0, public=public)
    latent_only = unrolled(observation, settings.with_(prior_pixel_steps=0, iterations=20),
                           seed=0, public=public)
    assert run.status == Status.OK and len(run.loss_history) == 30
    assert run.loss_history[:20] == latent_only.loss_history  # the same latent phase first
    assert min(run.loss_history[20:]) <= min(latent_only.loss_history)


def test_an_anchored_pixel_phase_stays_near_the_decoders_images() -> None:
    """With `prior_anchor_weight` the pixels are pulled towards decoder(codes): a strong anchor
    ends far nearer the latent phase's images than free pixels, and the reported matching loss
    leaves the anchor out (it is the replay's alone, as for free pixels)."""
    observation, public = _reply(), _public()
    free = unrolled_preset(iterations=30, public_prior="decoder", prior_pixel_steps=10,
                           learn_labels=False)
    latent_images = unrolled(observation, free.with_(prior_pixel_steps=0, iterations=20), seed=0,
                             public=public).inputs
    free_run = unrolled(observation, free, seed=0, public=public)
    anchored = unrolled(observation, free.with_(prior_anchor_weight=1e4), seed=0, public=public)
    assert anchored.status == Status.OK and len(anchored.loss_history) == 30
    moved_free = (free_run.inputs - latent_images).abs().mean()
    moved_anchored = (anchored.inputs - latent_images).abs().mean()
    assert moved_anchored < 0.5 * moved_free
    assert anchored.matching_loss < 1.0 < anchored.loss_history[-1]  # 1 - cosine vs + anchor


def test_the_pixel_phase_runs_at_its_own_learning_rate() -> None:
    """`prior_pixel_lr` is the pixel phase's rate alone: the latent phase is the same as with
    the attack's rate, and a vanishing pixel rate leaves the pixels where the latent phase put
    them while the attack's rate moves them."""
    observation, public = _reply(), _public()
    settings = unrolled_preset(iterations=30, public_prior="decoder", prior_pixel_steps=10,
                               learn_labels=False)
    latent_images = unrolled(observation, settings.with_(prior_pixel_steps=0, iterations=20),
                             seed=0, public=public).inputs
    default = unrolled(observation, settings, seed=0, public=public)
    still = unrolled(observation, settings.with_(prior_pixel_lr=1e-12), seed=0, public=public)
    assert still.status == Status.OK and len(still.loss_history) == 30
    assert still.loss_history[:20] == default.loss_history[:20]
    assert torch.allclose(still.inputs, latent_images, atol=1e-5)
    assert (default.inputs - latent_images).abs().mean() > 1e-3


def test_swapping_starting_codes_lowers_the_joint_matching_loss() -> None:
    """The greedy code search keeps a swap only when the replay's loss drops, so it ends at or
    below the start, here strictly below (24 public images: a few codes per class to try)."""
    observation, public = _reply(), _public()
    settings = unrolled_preset(iterations=5, public_prior="decoder", prior_code_swaps=3)
    autoencoder = public_autoencoder(public, 1, 28)
    labels = torch.tensor([1, 7])
    start = latent_start(autoencoder, public, labels, side=28, seed=0)
    loss = replay_loss(observation, settings, labels, autoencoder.decode)
    swapped = swap_codes(start, labels, autoencoder, public, loss, side=28, tries=3, seed=0)
    assert loss(swapped) < loss(start)
    assert unrolled(observation, settings, seed=0, public=public).status == Status.OK


@pytest.mark.parametrize("latent_refine, refinements", [(True, 2), (False, 1)])
def test_the_latent_phase_refinement_can_be_skipped(monkeypatch: pytest.MonkeyPatch,
                                                     latent_refine: bool, refinements: int) -> None:
    """`prior_latent_refine=False` refines the labels once, after the pixel phase, instead of
    after both phases; the attack still runs every planned step."""
    module = importlib.import_module("attacks.unrolled")  # the package exports a function of that name

    calls = []
    original = module.refine_reconstruction
    monkeypatch.setattr(module, "refine_reconstruction",
                        lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    settings = unrolled_preset(iterations=6, public_prior="decoder", prior_pixel_steps=3,
                               prior_latent_refine=latent_refine)
    run = unrolled(_reply(), settings, seed=0, public=_public())
    assert run.status == Status.OK and len(run.loss_history) == 6
    assert len(calls) == refinements
