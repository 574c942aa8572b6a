"""The rate-decoder attack: a decoder learned on public data reads the client's image back from
the readout layer's input, which the head's gradient gives away exactly (attacks/readout.py).

Capability: public samples from the clients' domain ("surrogate data"), disjoint from every client,
handed to the attacker as tensors (`PublicData`); without them the attack is refused. Samples are
images [C, H, W], or spike frames [T, C, H, W] for a model with the `frames` encoding (event data:
the decoder then outputs per-entry spike probabilities, returned time-major [T, B, C, H, W] like
the spike-modality attackers' dummies). Steps:

1. the readout features (firing-rate map of a spiking model, hidden activations of an ANN) of the
   public images, through the global model the server sent;
2. a small MLP decoder, features -> pixels, trained on them (mean squared error, Adam);
3. the features of each client sample, factored out of the head's gradient, decoded.

A decoder depends only on the global model, the public set and the decoder settings, so one per
global model serves every client of a round (`DecoderCache`).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attacks.analytic import labels_from_features
from attacks.idlg import last_linear_names
from attacks.matching import final_loss, rebuild_victim
from attacks.readout import observed_features, readout_features
from attacks.settings import AttackSettings
from attacks.trained_cache import TrainedCache
from attacks.types import Observation, Reconstruction, Status
from fedsnn.core.models import ModelSpec, build_model
from fedsnn.core.models.encoders import FramesEncoder

FEATURE_CHUNK = 500  # public images per forward pass when computing their features
DECODER_BATCH = 128
DECODER_LR = 1e-3
CACHE_SIZE = 2  # global models whose decoders are kept (a round's, and the one before)


class CapabilityError(ValueError):
    """The threat model does not grant what an attack needs (the message says what)."""


@dataclass(frozen=True, eq=False)
class PublicData:
    """Public samples of the clients' domain that the curious server holds.

    Attributes:
        images: [N, C, H, W] in [0, 1] (event data: spike frames [N, T, C, H, W]), disjoint from
            every client's data: what the decoder learns to output.
        source: where they come from, for the report (e.g. "mnist test split, 8000 images").
        inputs: what the model reads for each public sample, when a defense the server knows
            changes the client's inputs (spike-DP: the images Poisson-coded and privatized by the
            same mechanism, spike frames [N, T, C, H, W] read by a frames encoder, as
            `clients.privacy.RoundPrivacy.encode` makes the client's). None: the images themselves.
        labels: [N] their class labels, when the server holds them (the learned inverter
            simulates client training on them); None otherwise.
    """

    images: torch.Tensor
    source: str
    inputs: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.inputs is not None and len(self.inputs) != len(self.images):
            raise ValueError(f"public data: {len(self.inputs)} inputs for {len(self.images)} "
                             f"images")
        if self.labels is not None and self.labels.shape != (len(self.images),):
            raise ValueError(f"public data: labels of shape {tuple(self.labels.shape)} for "
                             f"{len(self.images)} images")
        if self.images.dim() not in (4, 5) or len(self.images) < 2:
            raise ValueError(f"public data: expected [N >= 2, C, H, W] images or [N, T, C, H, W] "
                             f"frames, got "
                             f"{tuple(self.images.shape)}")

    @property
    def fingerprint(self) -> str:
        return _digest([t for t in (self.images, self.inputs, self.labels) if t is not None])


def require_public(public: PublicData | None, spec: ModelSpec) -> PublicData:
    """The public data, checked against the victim's input shape.

    Raises:
        CapabilityError: no public data granted, or of another shape than the model's inputs.
    """
    if public is None:
        raise CapabilityError("rate-decoder needs public same-domain images, and the threat model "
                              "grants none (give the curious server a public split)")
    expected = sample_shape(spec)
    if tuple(public.images.shape[1:]) != expected:
        raise CapabilityError(f"rate-decoder: public samples are {tuple(public.images.shape[1:])}, "
                              f"the model takes {expected}")
    return public


def sample_shape(spec: ModelSpec) -> tuple[int, ...]:
    """One input sample of the model: [C, H, W], or [T, C, H, W] frames for the `frames` encoding."""
    image = (spec.in_channels, spec.image_size, spec.image_size)
    return (spec.time_steps, *image) if spec.encoding == "frames" else image


def _digest(tensors: list[torch.Tensor]) -> str:
    hasher = hashlib.sha1()
    for tensor in tensors:
        hasher.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return hasher.hexdigest()


class Decoder(nn.Module):
    """features -> sample: standardize, two hidden ReLU layers, a sigmoid to [0, 1] (pixels, or the
    probability of a spike for frames)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, hidden: int,
                 shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.shape = shape
        self.net = nn.Sequential(nn.Linear(len(mean), hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, math.prod(shape)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = (features - self.mean) / self.std
        return torch.sigmoid(self.net(z)).view(-1, *self.shape)


def public_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Readout features of the public images through `model`, in chunks."""
    return torch.cat([readout_features(model, images[i:i + FEATURE_CHUNK])
                      for i in range(0, len(images), FEATURE_CHUNK)])


def train_decoder(observation: Observation, public: PublicData, settings: AttackSettings,
                  seed: int) -> Decoder:
    """A decoder for the global model of `observation`, trained on the public images."""
    spec = observation.model_spec
    model = build_model(spec, encoder_seed=seed)
    model.load_state_dict(observation.global_state)
    model.train()  # as the client ran it (no dropout/batch norm in these models)
    inputs = public.images if public.inputs is None else public.inputs
    if inputs.dim() == 5 and spec.encoding != "frames":  # privatized spikes, read as the client
        model.encoder = FramesEncoder(spec.time_steps)   # pipeline's spiking model reads them
    features = public_features(model, inputs.float()).float()
    targets = public.images.float()
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        decoder = Decoder(features.mean(0), features.std(0).clamp(min=1e-3),
                          settings.decoder_hidden, tuple(targets.shape[1:]))
    fit_mlp(decoder, features, targets, settings.decoder_epochs, generator)
    return decoder.eval()


def fit_mlp(model: nn.Module, features: torch.Tensor, targets: torch.Tensor, epochs: int,
            generator: torch.Generator,
            loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.mse_loss) -> None:
    """Fit `model` (features -> targets) by `loss_fn` (mean squared error): Adam, shuffled
    mini-batches."""
    optimizer = torch.optim.Adam(model.parameters(), lr=DECODER_LR)
    for _ in range(epochs):
        order = torch.randperm(len(features), generator=generator)
        for begin in range(0, len(order), DECODER_BATCH):
            index = order[begin:begin + DECODER_BATCH]
            loss = loss_fn(model(features[index]), targets[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


class DecoderCache(TrainedCache["Decoder"]):
    """Decoders by (global model, public set, decoder settings, seed): one per global model serves
    every client of a round. Keeps the CACHE_SIZE most recent."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        super().__init__(size)

    def get(self, observation: Observation, public: PublicData, settings: AttackSettings,
            seed: int) -> Decoder:
        state = observation.global_state
        key = "/".join([_digest([state[k] for k in sorted(state)]), repr(observation.model_spec),
                        public.fingerprint, str(settings.decoder_epochs),
                        str(settings.decoder_hidden), str(seed)])
        return self.get_or_train(key, lambda: train_decoder(observation, public, settings, seed))


CACHE = DecoderCache()


def unreadable(observation: Observation) -> str | None:
    """Why the head's gradient does not give the client's readout features away (one line), or
    None when it does: after several local steps the head's change sums updates made at moving
    weights (and, under Adam, rescaled per entry), so its rows are no sample's features; a batch
    of more samples than classes gives Σ_b δ_b h_bᵀ of rank at most the class count, so some
    samples' features cannot be separated."""
    if observation.local_steps > 1 or not observation.exact_gradient:
        return (f"rate-decoder reads one exact gradient step; this update is "
                f"{observation.local_steps} local steps (the learned inverter reads FedAvg replies)")
    weight_name, _ = last_linear_names(build_model(observation.model_spec))
    weight = observation.gradients.get(weight_name)
    classes = int(weight.shape[0]) if weight is not None else observation.model_spec.num_classes
    if observation.batch_size > classes:
        return (f"rate-decoder: a batch of {observation.batch_size} samples > {classes} classes: "
                f"the head's gradient has rank <= {classes}, so not every sample's features can "
                "be read off it")
    return None


def rate_decoder(observation: Observation, settings: AttackSettings, *, seed: int,
                 deadline: float | None = None, public: PublicData | None = None) -> Reconstruction:
    """Decode the client's images from the readout features its gradient gives away.

    The seed fixes the decoder's initialisation and data order (restarts retrain it). For a batch
    of B, the B feature rows come out of the head's gradient in no particular order; rows that
    could not be separated are filled with the mean public image (the message says how many).

    Raises:
        CapabilityError: no public data (the runner records the attack as FAILED with the reason).
        ValueError: the head's gradient does not give the features away (`unreadable`: several
            local steps, a batch above the class count; or a factorization that fails).
    """
    del deadline  # one decoder training is not interruptible; its cost is said in the docs
    started = time.monotonic()
    public = require_public(public, observation.model_spec)
    problem = unreadable(observation)
    if problem is not None:
        raise ValueError(problem)
    factors = observed_features(observation)
    decoder = CACHE.get(observation, public, settings, seed)
    with torch.no_grad():
        images = decoder(factors.rows.float())
    batch = observation.batch_size
    missing = batch - len(images)
    if missing > 0:
        mean = public.images.float().mean(0, keepdim=True)
        images = torch.cat([images, mean.expand(missing, *mean.shape[1:])])
    if images.dim() == 5:  # frames [B, T, ...] -> time-major, as the spiking attackers return them
        images = images.transpose(0, 1).contiguous()
    victim = rebuild_victim(observation)
    labels = labels_from_features(victim, factors.rows, observation)

    def loss_of_logits(logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    loss = final_loss(victim, images, loss_of_logits, settings)
    note = (f"{len(factors.rows)} of {batch} feature vectors read off the head's gradient (weight "
            f"residual {factors.weight_residual:.1e}); decoder trained on {public.source}")
    if missing > 0:
        note += f"; {missing} filled with the mean public image"
    return Reconstruction(target_id=observation.target_id, attack="rate-decoder", inputs=images,
                          labels=labels, matching_loss=loss,
                          status=Status.OK if math.isfinite(loss) else Status.DIVERGED,
                          message=note, seconds=time.monotonic() - started)
