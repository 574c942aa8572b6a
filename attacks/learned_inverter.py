"""The learned inverter for FedAvg replies ("Learning to invert", Wu et al. 2023), with public data.

The server knows the global model it sent and the clients' train config (optimizer, learning
rate, epochs, batch size, `num-examples`). With public labelled images of the clients' domain
(capability public-data) it simulates client updates itself: it draws N public samples, runs the
client's local training on them (`attacks.local_training.simulate_update`, the optimizer replayed
exactly) and learns, from many such simulated updates, to map the update back to the images.
Each public sample it simulates on is first moved by a random offset of up to
`settings.inverter_shift` pixels (default 2), so the decoder sees more distinct samples than the
public set holds (it memorises a small one; docs/results.md, "shifted public samples"); opt-in,
`settings.inverter_rotate` also turns it by a random angle, which gained nothing measured).

What it reads: for every class c, the head's change ΔW[c] (lenet: the firing-rate map of the last
spiking layer for lenet-snn, its activations for the ANN twin, summed over the local steps with
the sign of each sample's error), the bias change Δb[c], the whole bias change and which class c
is. Under Adam the row of a class that occurs once in the batch is close to a copy of that
sample's readout features (graded: about 30 % of its entries move by the full learning rate at
every step); a class that occurs k times gives a mix of k samples, decoded as one image (trained
towards the nearest of them: `nearest_member_loss`). Where the head reads a flattened feature
map (lenet's 12 × 7 × 7), the decoder lays the row back out as that map and decodes it with
convolutions (`settings.inverter_decoder` "conv", attacks/map_decoder.py); elsewhere an MLP.
Even the exact sum of k >= 2 samples' features identifies one of them for only 13-23 % of such
classes (`experiments.readout_oracle`).
A second small model learns the class histogram from the same rows (N × the predicted shares,
rounded to integers that sum to N); each class gets its decoded image once per sample the
histogram gives it, so a class seen k times yields at most one of its k images.
With a time budget, simulation stops when half of it is spent (at least MIN_SIMULATED updates)
and the result is a TIMEOUT that says how many updates the inverter learned from.

Sees: the Observation (global state, the update `delta`, `training`) and the public images with
their labels. One inverter per (global model, train config, public set, settings) serves every
client of a round (`InverterCache`). Its cost: `inverter_clients` simulated local trainings plus
two fits of `inverter_epochs` epochs (lenet-snn, N = 8, 5 Adam steps, the defaults: 12,000
updates simulated in about 5 minutes and the conv decoder fit in about 13 on one core; the
simulated rows and their target images take about 1.8 GB; docs/results.md, "a conv decoder").
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from attacks.idlg import last_linear_names
from attacks.local_training import simulate_update
from attacks.map_decoder import MapDecoder, readout_map_shape
from attacks.matching import cosine_distance
from attacks.rate_decoder import CapabilityError, Decoder, PublicData, fit_mlp
from attacks.settings import AttackSettings
from attacks.trained_cache import TrainedCache
from attacks.types import LocalTraining, Observation, Reconstruction, Status
from fedsnn.core.metrics import round_to_total
from fedsnn.core.models import build_model
from fedsnn.core.sampling import epoch_batches

CACHE_SIZE = 2
MIN_SIMULATED = 50  # simulated client updates the inverter learns from, whatever the budget
MEMBERS = 4  # samples of one class kept as the decoder's targets for that class's row


def readable(observation: Observation) -> LocalTraining:
    """The observation's local training, when the learned inverter can read its update.

    Raises:
        ValueError: no update or no train config (the threat model withholds them), or a
            FedSGD reply (the rate decoder and the gradient attacks read those).
    """
    training = observation.training
    if observation.delta is None or training is None:
        raise ValueError("learned-inverter needs the update and the client's train config")
    if training.update_mode != "fedavg":
        raise ValueError("learned-inverter reads FedAvg replies; this is a FedSGD gradient")
    return training


def row_features(delta: dict[str, torch.Tensor], training: LocalTraining,
                 weight_name: str, bias_name: str) -> torch.Tensor:
    """[C, F + 1 + 2C] per class: the head's row change and bias change (divided by lr × steps),
    the whole bias change, and the class as a one-hot."""
    scale = training.learning_rate * training.steps
    weight = delta[weight_name].detach().double() / scale
    bias = delta[bias_name].detach().double() / scale
    classes = len(bias)
    return torch.cat([weight, bias[:, None], bias.expand(classes, classes),
                      torch.eye(classes, dtype=weight.dtype)], 1).float()


@dataclass
class Inverter:
    """The learned maps: class rows -> image, class rows -> share of the client's samples, and
    optionally (`inverter_pairs`) class rows -> two images for a class seen at least twice; and
    how many simulated client updates they were learned from."""

    decoder: Decoder | MapDecoder
    counter: nn.Module
    simulated: int
    pair_decoder: Decoder | None = None

    def invert(self, features: torch.Tensor, num_examples: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(images [N, ...], labels [N]) for one client's class rows: a class given k samples
        gets its decoded image k times or, with the pair decoder and k >= 2, its two decoded
        images then (k > 2) the single decoder's."""
        with torch.no_grad():
            shares = self.counter(features).squeeze(1).clamp(min=0).double()
            counts = round_to_total(shares / shares.sum().clamp(min=1e-12), num_examples)
            images = self.decoder(features)
            pairs = None if self.pair_decoder is None else self.pair_decoder(features)
        labels = torch.repeat_interleave(torch.arange(len(counts)), counts.long())
        out = images[labels].clone()
        if pairs is not None:
            for c in torch.nonzero(counts >= 2).flatten().tolist():
                first = int(torch.nonzero(labels == c)[0])
                out[first:first + 2] = pairs[c]
        return out, labels


def simulated_rows(observation: Observation, public: PublicData, settings: AttackSettings,
                   seed: int, stop_at: float | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class rows of `settings.inverter_clients` client updates the server simulates on random
    public draws: (features [M, D], each class's share of the draw [M], its samples in the draw
    [M, MEMBERS, ...] (`class_members`)). Stops early at time `stop_at` (time.monotonic),
    after at least MIN_SIMULATED clients."""
    training = readable(observation)
    spec = observation.model_spec
    model = build_model(spec, encoder_seed=seed)
    model.load_state_dict(observation.global_state)
    params = {name: p.detach() for name, p in model.named_parameters()}
    weight_name, bias_name = last_linear_names(model)
    generator = torch.Generator().manual_seed(seed)
    n, classes = training.num_examples, spec.num_classes
    features, shares, targets = [], [], []
    for done in range(settings.inverter_clients):
        if stop_at is not None and done >= MIN_SIMULATED and time.monotonic() > stop_at:
            break
        index = torch.randperm(len(public.images), generator=generator)[:n]
        x, y = public.images[index].float(), public.labels[index]
        if settings.inverter_rotate:
            x = rotated(x, settings.inverter_rotate, generator)
        if settings.inverter_shift:
            x = shifted(x, settings.inverter_shift, generator)
        order = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))
        batches = epoch_batches(n, epochs=training.epochs, batch_size=training.batch_size,
                                seed=order)
        delta = simulate_update(model, params, x, y, training, batches=batches)
        features.append(row_features(delta, training, weight_name, bias_name))
        shares.append(torch.bincount(y, minlength=classes).float() / n)
        targets.append(class_members(x, y, classes))
    return torch.cat(features), torch.cat(shares), torch.cat(targets)


def shifted(x: torch.Tensor, most: int, generator: torch.Generator) -> torch.Tensor:
    """Each sample moved by its own random whole-pixel offset of at most `most` along each axis
    (zeros come in): more distinct public samples for the inverter to learn from."""
    height, width = x.shape[-2:]
    padded = torch.nn.functional.pad(x, (most, most, most, most))
    offsets = torch.randint(0, 2 * most + 1, (len(x), 2), generator=generator).tolist()
    return torch.stack([padded[i, ..., top:top + height, left:left + width]
                        for i, (top, left) in enumerate(offsets)])


def rotated(x: torch.Tensor, most: float, generator: torch.Generator) -> torch.Tensor:
    """Each sample [.., C, H, W] rotated about its centre by its own random angle of at most
    `most` degrees either way (bilinear, zeros come in)."""
    angles = (torch.rand(len(x), generator=generator) * 2 - 1) * math.radians(most)
    cos, sin, zero = angles.cos(), angles.sin(), torch.zeros(len(x))
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid.to(x.dtype), align_corners=False)


def class_members(x: torch.Tensor, y: torch.Tensor, classes: int) -> torch.Tensor:
    """[C, MEMBERS, ...]: per class, up to MEMBERS of its samples in x, the first repeated to fill
    the rest (zeros for an absent class), so a minimum over members needs no mask."""
    members = torch.zeros(classes, MEMBERS, *x.shape[1:])
    for c in range(classes):
        mine = x[y == c][:MEMBERS]
        if len(mine):
            members[c] = torch.cat([mine, mine[:1].expand(MEMBERS - len(mine), *x.shape[1:])])
    return members


def nearest_member_loss(images: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """Mean over rows of the squared error to the row's closest member: a class seen k times
    gives one row mixing k samples, and the decoder learns to give back one of them sharply
    (a blurred mean of k samples identifies none)."""
    errors = ((images[:, None] - members) ** 2).flatten(2).mean(2)
    return errors.min(1).values.mean()


def pair_loss(pairs: torch.Tensor, members: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mean over rows of the squared error of the two decoded images [B, 2, ...] to the best
    two distinct members of the row's class (of its `counts` samples, at most MEMBERS): a row
    mixing k >= 2 samples, decoded as two of them."""
    errors = ((pairs[:, :, None] - members[:, None]) ** 2).flatten(3).mean(3)  # [B, 2, MEMBERS]
    total = errors[:, 0, :, None] + errors[:, 1, None, :]  # [B, MEMBERS, MEMBERS]
    index = torch.arange(members.shape[1])
    usable = index[None] < counts.clamp(max=members.shape[1])[:, None]  # [B, MEMBERS]
    allowed = usable[:, :, None] & usable[:, None, :] & (index[:, None] != index[None])[None]
    return total.masked_fill(~allowed, float("inf")).flatten(1).min(1).values.mean()


def train_pair_decoder(features: torch.Tensor, shares: torch.Tensor, targets: torch.Tensor,
                       mean: torch.Tensor, std: torch.Tensor, settings: AttackSettings, *,
                       training: LocalTraining, seed: int, generator: torch.Generator) -> Decoder:
    """The pair decoder (`inverter_pairs`), fit by `pair_loss` on the rows of classes that hold
    at least two samples of their simulated client."""
    counts = (shares * training.num_examples).round()
    several = counts >= 2
    member_shape = tuple(targets.shape[1:])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        decoder = Decoder(mean, std, settings.inverter_hidden, (2, *member_shape[1:]))
    # fit_mlp takes one target tensor: the members, flattened, and the count packed side by side
    packed = torch.cat([targets[several].flatten(1), counts[several, None]], 1)

    def loss(pairs: torch.Tensor, packed_rows: torch.Tensor) -> torch.Tensor:
        members = packed_rows[:, :-1].view(-1, *member_shape)
        return pair_loss(pairs, members, packed_rows[:, -1].long())

    fit_mlp(decoder, features[several], packed, settings.inverter_epochs, generator, loss)
    return decoder.eval()


def train_inverter(observation: Observation, public: PublicData, settings: AttackSettings,
                   seed: int, deadline: float | None = None) -> Inverter:
    """Simulate, then fit the decoder on the classes present and the counter on every row. With
    a deadline, simulation stops when half the time left is spent (the fits take the rest)."""
    stop_at = None if deadline is None else (time.monotonic() + deadline) / 2
    features, shares, targets = simulated_rows(observation, public, settings, seed, stop_at)
    present = shares > 0
    mean, std = features.mean(0), features.std(0).clamp(min=1e-6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        decoder = image_decoder(observation, mean, std, settings, tuple(targets.shape[2:]))
        counter = nn.Sequential(Standardize(mean, std), nn.Linear(len(mean), 256), nn.ReLU(),
                                nn.Linear(256, 1), nn.Softplus())
    generator = torch.Generator().manual_seed(seed)
    fit_mlp(decoder, features[present], targets[present], settings.inverter_epochs, generator,
            nearest_member_loss)
    fit_mlp(counter, features, shares[:, None], settings.inverter_epochs, generator)
    simulated = len(shares) // observation.model_spec.num_classes
    pair_decoder = None
    if settings.inverter_pairs:
        pair_decoder = train_pair_decoder(features, shares, targets, mean, std, settings,
                                          training=readable(observation), seed=seed,
                                          generator=generator)
    return Inverter(decoder.eval(), counter.eval(), simulated, pair_decoder)


def image_decoder(observation: Observation, mean: torch.Tensor, std: torch.Tensor,
                  settings: AttackSettings, shape: tuple[int, ...]) -> Decoder | MapDecoder:
    """The untrained row -> image decoder `settings.inverter_decoder` names (the MLP where the
    conv decoder is asked for and the head reads no feature map)."""
    if settings.inverter_decoder == "conv":
        map_shape = readout_map_shape(build_model(observation.model_spec), shape)
        if map_shape is not None:
            return MapDecoder(mean, std, map_shape, shape)
    return Decoder(mean, std, settings.inverter_hidden, shape)


class Standardize(nn.Module):
    """(x - mean) / std with fixed statistics."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _key(observation: Observation, public: PublicData, settings: AttackSettings, seed: int) -> str:
    state = observation.global_state
    hasher = hashlib.sha1()
    for name in sorted(state):
        hasher.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    training = observation.training
    assert training is not None
    return "/".join([hasher.hexdigest(), repr(observation.model_spec), public.fingerprint,
                     repr((training.optimizer, training.learning_rate, training.momentum,
                           training.epochs, training.batch_size, training.num_examples)),
                     repr((settings.inverter_epochs, settings.inverter_hidden,
                           settings.inverter_decoder, settings.inverter_clients,
                           settings.inverter_shift,
                           settings.inverter_rotate, settings.inverter_pairs)), str(seed)])


class InverterCache(TrainedCache["Inverter"]):
    """Inverters by (global model, train config, public set, settings, seed): one per round and
    client size serves every client of it. Keeps the CACHE_SIZE most recent."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        super().__init__(size)

    def get(self, observation: Observation, public: PublicData, settings: AttackSettings,
            seed: int, deadline: float | None = None) -> Inverter:
        return self.get_or_train(_key(observation, public, settings, seed), lambda: train_inverter(
            observation, public, settings, seed, deadline))


CACHE = InverterCache()


def require_labelled(public: PublicData | None, observation: Observation) -> PublicData:
    """The public data, as the learned inverter needs it: labelled images of the model's shape.

    Raises:
        CapabilityError: none granted, no labels, or samples of another shape.
    """
    if public is None:
        raise CapabilityError("learned-inverter needs public same-domain images, and the threat "
                              "model grants none (give the curious server a public split)")
    spec = observation.model_spec
    shape = (spec.in_channels, spec.image_size, spec.image_size)
    if public.labels is None or tuple(public.images.shape[1:]) != shape:
        raise CapabilityError(f"learned-inverter needs labelled public images of shape {shape}; "
                              f"got {tuple(public.images.shape[1:])} "
                              f"{'without' if public.labels is None else 'with'} labels")
    return public


def learned_inverter(observation: Observation, settings: AttackSettings, *, seed: int,
                     deadline: float | None = None, public: PublicData | None = None
                     ) -> Reconstruction:
    """Invert one FedAvg reply with the inverter learned for its round (see the module docstring).
    The matching loss is the cosine distance between the observed update and the update the
    client's training gives on the reconstruction (the attacker's own criterion).

    Raises:
        CapabilityError: no labelled public data of the model's shape.
        ValueError: not a FedAvg reply with its update and train config (`readable`).
    """
    started = time.monotonic()
    public = require_labelled(public, observation)
    training = readable(observation)
    inverter = CACHE.get(observation, public, settings, seed, deadline)
    model = build_model(observation.model_spec, encoder_seed=seed)
    model.load_state_dict(observation.global_state)
    weight_name, bias_name = last_linear_names(model)
    assert observation.delta is not None
    features = row_features(observation.delta, training, weight_name, bias_name)
    images, labels = inverter.invert(features, training.num_examples)
    params = {name: p.detach() for name, p in model.named_parameters()}
    replayed = simulate_update(model, params, images, labels, training)
    names = sorted(replayed)
    loss = float(cosine_distance([replayed[n].detach().double() for n in names],
                                 [observation.delta[n].double() for n in names]))
    short = inverter.simulated < settings.inverter_clients
    status = Status.DIVERGED if not math.isfinite(loss) else Status.TIMEOUT if short else Status.OK
    return Reconstruction(
        target_id=observation.target_id, attack="learned-inverter", inputs=images, labels=labels,
        matching_loss=loss, status=status,
        message=f"inverter learned from {inverter.simulated} of {settings.inverter_clients} "
                f"planned client updates simulated on {public.source}"
                f"{' (the time budget ran out)' if short else ''}; "
                f"{int((torch.bincount(labels) > 0).sum())} classes decoded",
        seconds=time.monotonic() - started)

