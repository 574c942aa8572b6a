"""A prior learned from public images for the unrolled attack: dummies as a decoder's outputs.

Capability: public same-domain images (public-data), as for the rate decoder. A small
autoencoder (MLP, a latent of `LATENT_DIM` per image, a sigmoid output at the dummies'
resolution) is trained once on them; the unrolled attack (`AttackSettings.public_prior =
"decoder"`) then optimizes the latents z and replays decoder(z). Far fewer unknowns than pixels
(MNIST: 32 instead of 784 per image), at the price of the images the decoder cannot make.

A decoder depends only on the public images and the resolution, so one serves every client
(`TrainedCache`, keyed by the public set's fingerprint).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from attacks.rate_decoder import CapabilityError, PublicData
from attacks.trained_cache import TrainedCache
from fedsnn.core.image_format import resize

LATENT_DIM = 32
HIDDEN = 512
EPOCHS = 150
BATCH = 64
LR = 1e-3
_CACHE: TrainedCache["Autoencoder"] = TrainedCache(2)


class Autoencoder(nn.Module):
    """image [C, side, side] -> z [LATENT_DIM] -> image in (0, 1) (sigmoid)."""

    def __init__(self, channels: int, side: int, latent: int = LATENT_DIM) -> None:
        super().__init__()
        self.shape = (channels, side, side)
        pixels = channels * side * side
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, HIDDEN), nn.ReLU(),
                                     nn.Linear(HIDDEN, latent))
        self.decoder_net = nn.Sequential(nn.Linear(latent, HIDDEN), nn.ReLU(),
                                         nn.Linear(HIDDEN, pixels), nn.Sigmoid())

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder_net(z).view(len(z), *self.shape)


def train_autoencoder(images: torch.Tensor, *, seed: int = 0, epochs: int = EPOCHS
                      ) -> Autoencoder:
    """An autoencoder fit (MSE, Adam) on [N, C, H, W] images in [0, 1]; frozen, eval mode."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = Autoencoder(images.shape[1], images.shape[-1])
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    for _ in range(epochs):
        for batch in torch.randperm(len(images), generator=generator).split(BATCH):
            optimizer.zero_grad()
            x = images[batch]
            F.mse_loss(model.decode(model.encode(x)), x).backward()
            optimizer.step()
    return model.eval().requires_grad_(False)


def public_autoencoder(public: PublicData | None, channels: int, side: int) -> Autoencoder:
    """The autoencoder of the public images at the dummies' resolution (cached).

    Raises:
        CapabilityError: no public images granted, or not images of `channels` channels."""
    if public is None:
        raise CapabilityError("public_prior needs public same-domain images (capability "
                              "public-data); the threat model grants none")
    if public.images.dim() != 4 or public.images.shape[1] != channels:
        raise CapabilityError(f"public_prior: public samples are "
                              f"{tuple(public.images.shape[1:])}, the dummies have {channels} "
                              f"channel(s)")
    key = f"{public.fingerprint}/{channels}/{side}"
    return _CACHE.get_or_train(key, lambda: train_autoencoder(
        resize(public.images.float(), side)))


def class_pool(public: PublicData, label: int) -> torch.Tensor:
    """Indices of the public images of class `label` (all of them when the public images have
    no labels or none of that class)."""
    everything = torch.arange(len(public.images))
    if public.labels is None:
        return everything
    pool = (public.labels == label).nonzero().flatten()
    return pool if len(pool) else everything


def latent_start(autoencoder: Autoencoder, public: PublicData, labels: torch.Tensor, *,
                 side: int, seed: int) -> torch.Tensor:
    """Each dummy's starting latent: the code of a random public image of its (estimated)
    class (of any class when the public images have no labels or none of that class), so
    dummies start distinct and inside the decoder's range."""
    images = resize(public.images.float(), side)
    generator = torch.Generator().manual_seed(seed)
    picks = []
    for label in labels.tolist():
        pool = class_pool(public, label)
        picks.append(int(pool[torch.randint(len(pool), (1,), generator=generator)]))
    with torch.no_grad():
        return autoencoder.encode(images[torch.tensor(picks)])


def swap_codes(codes: torch.Tensor, labels: torch.Tensor, autoencoder: Autoencoder,
               public: PublicData, loss: Callable[[torch.Tensor], float], *, side: int,
               tries: int, seed: int) -> torch.Tensor:
    """A greedy search over the dummies' starting codes: for each dummy in turn, the codes of
    `tries` random public images of its (estimated) class are tried in its place and the one
    with the lowest joint matching `loss` is kept. A dummy's code cannot be judged alone (the
    update mixes every sample); one at a time, the others fixed, it can. Never raises the loss."""
    images = resize(public.images.float(), side)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        pool_codes = autoencoder.encode(images)
    best_codes, best = codes.detach().clone(), loss(codes)
    for i, label in enumerate(labels.tolist()):
        pool = class_pool(public, label)
        for j in pool[torch.randperm(len(pool), generator=generator)[:tries]].tolist():
            trial = best_codes.clone()
            trial[i] = pool_codes[j]
            value = loss(trial)
            if value < best:
                best_codes, best = trial, value
    return best_codes
