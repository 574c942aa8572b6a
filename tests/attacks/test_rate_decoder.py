"""The rate-decoder attack: refused without public data; the readout features it reads off the
gradient are the client's exactly; on real digits its reconstructions beat the mean-image guess."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch

from attacks import AttackSettings, CapabilityError, PublicData, invert
from attacks.rate_decoder import DecoderCache
from attacks.readout import observed_features, readout_features
from attacks.strongest_mode import run_candidates
from fedsnn.core.data import load_dataset
from fedsnn.core.models import ModelSpec, build_model
from tests.attacks.victims import observe

FAST = AttackSettings(attack="rate-decoder", decoder_epochs=15, decoder_hidden=256)


@pytest.fixture(scope="module")
def split() -> tuple[PublicData, torch.Tensor, torch.Tensor]:
    """Public images (the digits train split) and victims from the disjoint test split."""
    data = load_dataset("digits")
    return PublicData(data.train_x, "digits train split"), data.test_x[:12], data.test_y[:12]


def _shared_victims(x: torch.Tensor, y: torch.Tensor, model: str = "lenet-snn") -> list:
    """One global model, one client per sample (batch 1): as in one round of an audit."""
    return [observe(model, x[i:i + 1], y[i:i + 1], seed=3) for i in range(len(x))]


def test_refused_without_public_data(split: tuple[PublicData, torch.Tensor, torch.Tensor]) -> None:
    _, x, y = split
    with pytest.raises(CapabilityError, match="grants none") as caught:
        invert(_shared_victims(x[:1], y[:1]), FAST)
    assert "\n" not in str(caught.value)


def test_refused_for_public_data_of_another_shape(
        split: tuple[PublicData, torch.Tensor, torch.Tensor]) -> None:
    _, x, y = split
    small = PublicData(torch.rand(4, 1, 8, 8), "8x8 images")
    with pytest.raises(CapabilityError, match="public samples are"):
        invert(_shared_victims(x[:1], y[:1]), FAST, public=small)


@pytest.mark.parametrize("model", ["lenet-snn", "lenet"])
def test_features_read_off_the_gradient_are_the_clients(
        model: str, split: tuple[PublicData, torch.Tensor, torch.Tensor]) -> None:
    _, x, y = split
    observation = observe(model, x[:1], y[:1], seed=3)
    victim = build_model(ModelSpec(model))
    victim.load_state_dict(observation.global_state)
    truth = readout_features(victim, x[:1])
    recovered = observed_features(observation).rows.float()
    assert truth.sum() > 0  # some spikes reached the head
    assert torch.allclose(recovered, truth, atol=1e-4)


def test_beats_the_mean_image_on_lenet_snn(
        split: tuple[PublicData, torch.Tensor, torch.Tensor]) -> None:
    public, x, y = split
    reconstructions = invert(_shared_victims(x, y), FAST, public=public)
    images = torch.cat([r.inputs for r in reconstructions])
    mse = ((images - x) ** 2).flatten(1).mean(1)
    guess = ((public.images.mean(0, keepdim=True) - x) ** 2).flatten(1).mean(1)
    assert all(r.status.value == "ok" for r in reconstructions)
    assert float(mse.median()) < 0.75 * float(guess.median())
    # nearest neighbour among the victims: most reconstructions point at their own original
    nearest = torch.cdist(images.flatten(1), x.flatten(1)).argmin(1)
    assert float((nearest == torch.arange(len(x))).float().mean()) > 0.5
    labels = torch.cat([r.labels for r in reconstructions])
    assert bool((labels == y).all())


def test_one_decoder_per_global_model(split: tuple[PublicData, torch.Tensor, torch.Tensor]) -> None:
    public, x, y = split
    cache = DecoderCache()
    observations = _shared_victims(x[:3], y[:3])
    for observation in observations:
        cache.get(observation, public, FAST, seed=0)
    assert cache.trained == 1
    cache.get(observe("lenet-snn", x[:1], y[:1], seed=4), public, FAST, seed=0)
    assert cache.trained == 2


def test_strongest_runs_it_only_when_public_data_is_granted(
        split: tuple[PublicData, torch.Tensor, torch.Tensor]) -> None:
    public, x, y = split
    observation = _shared_victims(x[:1], y[:1])[0]
    settings = FAST.with_(attack="strongest", iterations=2)
    names = [n for n, _, _ in run_candidates(observation, settings, seed=0,
                                             names=["analytic", "rate-decoder"])]
    assert names == ["analytic"]
    names = [n for n, _, _ in run_candidates(observation, settings, seed=0,
                                             names=["analytic", "rate-decoder"], public=public)]
    assert names == ["analytic", "rate-decoder"]


def test_strongest_keeps_the_decoder_by_its_own_criterion_on_lenet_snn(
        split: tuple[PublicData, torch.Tensor, torch.Tensor], monkeypatch: pytest.MonkeyPatch) -> None:
    strongest_module = importlib.import_module("attacks.strongest_mode")
    public, x, y = split
    names = ("analytic", "rate-decoder", "idlg")
    monkeypatch.setattr(strongest_module, "CANDIDATES",
                        {n: strongest_module.CANDIDATES[n] for n in names})
    observation = _shared_victims(x[:1], y[:1])[0]
    settings = FAST.with_(attack="strongest", iterations=5)
    candidates = run_candidates(observation, settings, seed=0, public=public)
    ranks = {n: strongest_module.rank(observation, settings, r, loss) for n, r, loss in candidates}
    kept = strongest_module.strongest(observation, settings, seed=0, public=public)
    assert kept.winner == min(ranks, key=ranks.get) == "rate-decoder"
    mse = float(((kept.inputs - x[:1]) ** 2).mean())
    assert mse < float(((public.images.mean(0) - x[0]) ** 2).mean())


def test_a_batch_up_to_the_number_of_classes_gives_every_rate_map_away(
        split: tuple[PublicData, torch.Tensor, torch.Tensor]) -> None:
    # Σ_b δ_b r_bᵀ / B has rank B <= 10 classes; each sample's private units separate it exactly
    _, x, y = split
    observation = observe("lenet-snn", x[:6], y[:6], seed=3)
    victim = build_model(ModelSpec("lenet-snn"))
    victim.load_state_dict(observation.global_state)
    truth = readout_features(victim, x[:6]).double()
    recovered = observed_features(observation).rows
    assert len(recovered) == 6
    assert float(torch.cdist(truth, recovered).min(1).values.max()) < 1e-3


@pytest.fixture(scope="module")
def events() -> tuple[PublicData, torch.Tensor, torch.Tensor]:
    """Public spike frames (part of dvs-digits' train split) and victims from its test split."""
    data = load_dataset("dvs-digits")
    return PublicData(data.train_x[:800], "dvs-digits train split"), data.test_x[:8], data.test_y[:8]


def test_refused_for_images_when_the_model_reads_event_frames(
        events: tuple[PublicData, torch.Tensor, torch.Tensor]) -> None:
    _, x, y = events
    observation = observe("lenet-snn", x[:1], y[:1], seed=3, in_channels=2, encoding="frames")
    images = PublicData(torch.rand(4, 2, 28, 28), "time-integrated frames")
    with pytest.raises(CapabilityError, match=r"public samples are \(2, 28, 28\)"):
        invert([observation], FAST, public=images)


def test_decodes_event_frames_better_than_the_mean_frames(
        events: tuple[PublicData, torch.Tensor, torch.Tensor]) -> None:
    """On dvs-digits the rate map of a lenet-snn reading spike frames gives the frames back: each
    decoded sample [T, 2, H, W] is closer to its own original than the public mean frames are, and
    most point at their own original among the victims."""
    public, x, y = events
    observations = [observe("lenet-snn", x[i:i + 1], y[i:i + 1], seed=3, in_channels=2,
                            encoding="frames") for i in range(len(x))]
    reconstructions = invert(observations, FAST, public=public)
    assert all(r.inputs.shape == (4, 1, 2, 28, 28) for r in reconstructions)  # time-major
    frames = torch.cat([r.inputs.transpose(0, 1) for r in reconstructions])
    mse = ((frames - x) ** 2).flatten(1).mean(1)
    guess = ((public.images.mean(0, keepdim=True) - x) ** 2).flatten(1).mean(1)
    assert float(mse.median()) < 0.75 * float(guess.median())
    nearest = torch.cdist(frames.flatten(1), x.flatten(1)).argmin(1)
    assert float((nearest == torch.arange(len(x))).float().mean()) > 0.5
    assert bool((torch.cat([r.labels for r in reconstructions]) == y).all())


def test_refuses_a_multi_step_update_with_a_reason(
        split: tuple[PublicData, torch.Tensor, torch.Tensor]) -> None:
    # a FedAvg reply's head change is no sample's features: refused, not decoded and called "ok"
    public, x, y = split
    fedavg = dataclasses.replace(observe("lenet-snn", x[:4], y[:4], seed=3), local_steps=5,
                                 exact_gradient=False)
    [result] = invert([fedavg], FAST, public=public)
    assert result.status.value == "failed"
    assert "5 local steps" in result.message


def test_refuses_a_batch_above_the_class_count_instead_of_filling_rows(
        split: tuple[PublicData, torch.Tensor, torch.Tensor]) -> None:
    public, x, y = split
    [result] = invert([observe("lenet-snn", x[:12], y[:12], seed=3)], FAST, public=public)
    assert result.status.value == "failed"
    assert "12 samples > 10 classes" in result.message
    assert "mean public image" not in result.message
