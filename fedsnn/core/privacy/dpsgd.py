"""DP-SGD on a client with Opacus: per-sample clipping and Gaussian noise in local training.

Everything Opacus is behind `private_epochs` (local epochs on Poisson-sampled batches) and
`private_gradient` (one private gradient of one Poisson-sampled batch, for FedSGD replies). Both
sample batches with Opacus' `DPDataLoader` (each sample joins a batch independently with
probability q = 1 / ⌈n / batch-size⌉, Opacus' rule), so ε is per sample under add/remove one
sample, amplified by sampling at rate q: the relation Opacus' accountant assumes. Both take the
accountant's history of earlier rounds and return the new one: a client object is re-created every
round, so the caller keeps the history (Flower's `Context.state`) and ε accumulates over the run.

Spiking models see [T, B, ...] tensors inside, so their per-sample gradients need
`batch_first=False`; Opacus's default (True) silently treats time steps as samples
(`tests/core/privacy/test_dpsgd.py` checks the gradients against a one-sample-at-a-time loop).
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from opacus import GradSampleModule, PrivacyEngine
from opacus.accountants.utils import get_noise_multiplier
from opacus.data_loader import DPDataLoader
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

# opacus.utils.module_utils calls logging.basicConfig at import: a root handler through which every
# Flower log line (the flwr logger propagates) was printed a second time, with a timestamp.
OPACUS_ROOT_FORMAT = "%(asctime)s:%(levelname)s:%(message)s"
for _handler in list(logging.root.handlers):
    if getattr(_handler.formatter, "_fmt", None) == OPACUS_ROOT_FORMAT:
        logging.root.removeHandler(_handler)

from fedsnn.core.privacy.ledger import OPACUS_ACCOUNTANTS, OpacusLedger


History = list[tuple[float, float, int]]  # (noise multiplier, sample rate, steps), Opacus' format


@dataclass(frozen=True)
class DpSgdSettings:
    """DP-SGD knobs.

    Attributes:
        max_grad_norm: per-sample L2 clipping bound C.
        delta: δ at which ε is reported.
        noise_multiplier: σ / C, used when `target_epsilon` is 0.
        target_epsilon: > 0: Opacus' `make_private_with_epsilon` picks σ so that `total_epochs`
            epochs (the whole run) spend exactly this ε.
        total_epochs: epochs the run will take in all (rounds × local epochs; rounds for one
            gradient per round).
        accountant: "rdp" or "pld" (Opacus' PRV accountant).
        batch_first: False for spiking models ([T, B, ...] inside).
    """

    max_grad_norm: float
    delta: float
    noise_multiplier: float = 1.0
    target_epsilon: float = 0.0
    total_epochs: int = 1
    accountant: str = "rdp"
    batch_first: bool = True


@dataclass(frozen=True)
class DpSgdRound:
    """One round of DP-SGD on a node: settings with σ resolved, the public n̂, the sampling rate
    q = 1/⌈n̂/B⌉ and step count it implies, and the node's ledger (continued by training)."""

    settings: DpSgdSettings
    ledger: OpacusLedger
    public_examples: int
    sample_rate: float
    steps: int


@dataclass(frozen=True)
class DpSgdOutcome:
    """What a private training call did, and the per-sample ε spent so far (whole run)."""

    loss: float
    num_examples: int
    steps: int
    epsilon: float
    noise_multiplier: float
    history: History


def secret_generator() -> torch.Generator:
    """A generator seeded from `secrets`: DP-SGD's noise and Poisson batches must not follow
    torch's global generator, which any `torch.manual_seed` in the process makes derivable."""
    return torch.Generator().manual_seed(secrets.randbits(63))


def _make_private(model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader,
                  settings: DpSgdSettings, *, history: Sequence[Sequence[float]],
                  steps_per_epoch: int | None = None
                  ) -> tuple[PrivacyEngine, GradSampleModule, torch.optim.Optimizer, DataLoader]:
    """Opacus' engine around `model`. The loader is used as given: Opacus would build its Poisson
    loader with the model's `batch_first`, which for a spiking model puts the batch of the *data*
    (batch-first [B, ...] samples and [B] labels) in the wrong dimension. `steps_per_epoch`: an
    "epoch" that takes that many steps instead of a pass over the loader (FedSGD: one)."""
    if settings.accountant not in OPACUS_ACCOUNTANTS:
        raise ValueError(f"Unknown accountant {settings.accountant!r}; expected one of "
                         f"{sorted(OPACUS_ACCOUNTANTS)}")
    engine = PrivacyEngine(accountant=OPACUS_ACCOUNTANTS[settings.accountant])
    common = dict(module=model, optimizer=optimizer, data_loader=loader,
                  max_grad_norm=settings.max_grad_norm, batch_first=settings.batch_first,
                  poisson_sampling=False, noise_generator=secret_generator())
    steps = settings.total_epochs * (steps_per_epoch or len(loader))
    sigma = noise_multiplier_for(settings, sample_rate=1 / len(loader), steps=steps)
    module, dp_optimizer, dp_loader = engine.make_private(noise_multiplier=sigma, **common)
    if history:  # after calibration: σ is chosen for the whole run from a zero start
        engine.accountant.load_state_dict({"history": [tuple(h) for h in history],
                                           "mechanism": engine.accountant.mechanism()})
    return engine, module, dp_optimizer, dp_loader


def noise_multiplier_for(settings: DpSgdSettings, *, sample_rate: float, steps: int) -> float:
    """σ: `settings.noise_multiplier`, or with a target ε the σ whose `steps` steps at rate q
    spend it (Opacus' `get_noise_multiplier`, as `make_private_with_epsilon` calibrates)."""
    if settings.target_epsilon <= 0:
        return settings.noise_multiplier
    return float(get_noise_multiplier(target_epsilon=settings.target_epsilon,
                                      target_delta=settings.delta, sample_rate=sample_rate,
                                      steps=steps,
                                      accountant=OPACUS_ACCOUNTANTS[settings.accountant]))


def _outcome(engine: PrivacyEngine, optimizer: torch.optim.Optimizer, settings: DpSgdSettings,
             *, loss: float, num_examples: int, steps: int) -> DpSgdOutcome:
    history = [(float(z), float(q), int(n)) for z, q, n in engine.accountant.history]
    epsilon = float(engine.get_epsilon(settings.delta)) if history else 0.0
    return DpSgdOutcome(loss=loss, num_examples=num_examples, steps=steps, epsilon=epsilon,
                        noise_multiplier=float(optimizer.noise_multiplier), history=history)


def poisson_loader(x: torch.Tensor, y: torch.Tensor, *, batch_size: int,
                   public_examples: int | None = None,
                   generator: torch.Generator | None = None) -> DPDataLoader:
    """Opacus' Poisson-sampling loader over (x, y) at q = 1 / ⌈n̂ / batch_size⌉, ⌈n̂ /
    batch_size⌉ batches an epoch, n̂ = `public_examples` (default: len(x)). With a public n̂ the
    rate and the number of steps do not depend on how many samples the data holds."""
    public = public_examples or len(x)
    loader = DPDataLoader(TensorDataset(x, y), sample_rate=poisson_sample_rate(public, batch_size),
                          generator=generator)
    # Opacus' sampler takes int(1/q) steps, which is ⌈n̂/B⌉ − 1 for some n̂ (1/(1/93) < 93)
    loader.batch_sampler.steps = math.ceil(public / batch_size)  # type: ignore[union-attr]
    return loader


def private_epochs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                   optimizer: torch.optim.Optimizer, settings: DpSgdSettings, epochs: int,
                   batch_size: int, history: Sequence[Sequence[float]] = (),
                   public_examples: int | None = None,
                   generator: torch.Generator | None = None) -> DpSgdOutcome:
    """`epochs` of DP-SGD over (x, y) on Poisson-sampled batches (expected size `batch_size`).

    The model is trained in place. ε is per sample (add/remove one sample), whole run so far.
    With `public_examples` n̂ the sampling rate, the number of steps (epochs · ⌈n̂ / B⌉), the
    averaging denominator (q·n̂) and the reported `num_examples` (n̂) are public figures: two
    datasets that differ by one sample give replies that differ only through the noised sum.
    """
    public = public_examples or len(x)
    loader = poisson_loader(x, y, batch_size=batch_size, public_examples=public,
                            generator=generator or secret_generator())
    engine, module, dp_optimizer, dp_loader = _make_private(model, optimizer, loader, settings,
                                                            history=history)
    dp_optimizer.expected_batch_size = int(public * loader.sample_rate)  # Opacus used len(x)
    module.train()
    total, seen, steps = 0.0, 0, 0
    try:
        for _ in range(epochs):
            for batch_x, batch_y in dp_loader:
                dp_optimizer.zero_grad()
                if len(batch_x) == 0:  # an empty Poisson batch still takes a (noise-only) step
                    _empty_step(module, dp_optimizer)
                else:
                    loss = F.cross_entropy(module(batch_x), batch_y)
                    loss.backward()
                    total += loss.item() * len(batch_x)
                    seen += len(batch_x)
                dp_optimizer.step()
                steps += 1
    finally:
        module.cleanup()
    return _outcome(engine, dp_optimizer, settings, loss=total / max(seen, 1),
                    num_examples=public, steps=steps)


def _empty_step(module: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Give every parameter a zero per-sample gradient batch so Opacus adds noise only."""
    for parameter in module.parameters():
        if parameter.requires_grad:
            parameter.grad_sample = torch.zeros((0, *parameter.shape))


def poisson_sample_rate(num_samples: int, batch_size: int) -> float:
    """Opacus' sampling rate for an expected batch of `batch_size` out of `num_samples`:
    q = 1 / ⌈n / batch_size⌉ (what `DPDataLoader.from_data_loader` uses)."""
    return 1 / len(DataLoader(range(num_samples), batch_size=batch_size))


def poisson_batch(num_samples: int, *, batch_size: int, public_examples: int | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """One Poisson-sampled batch (sorted indices): each of `num_samples` samples joins with
    probability q = `poisson_sample_rate` of `public_examples` n̂ (default: `num_samples`;
    Opacus' `UniformWithReplacementSampler`). The
    generator (default: `secret_generator`) must be secret from whoever the ε is claimed
    against: the amplification by sampling holds only if they cannot tell which samples were
    drawn."""
    sampler = UniformWithReplacementSampler(
        num_samples=num_samples,
        sample_rate=poisson_sample_rate(public_examples or num_samples, batch_size),
        generator=generator or secret_generator(), steps=1)
    return torch.tensor(next(iter(sampler)), dtype=torch.long)


def private_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                     settings: DpSgdSettings, num_samples: int, batch_size: int,
                     history: Sequence[Sequence[float]] = ()
                     ) -> tuple[dict[str, torch.Tensor], DpSgdOutcome]:
    """The DP-SGD gradient of one Poisson-sampled batch (x, y) drawn by `poisson_batch` from
    `num_samples` samples with expected size `batch_size`: per-sample gradients clipped to C,
    summed, plus N(0, σ²C²), divided by the expected batch size. By parameter name.
    `num_samples` sets the rate and the denominator: pass the node's public n̂, not len(data).

    ε: one step at sample rate q (Opacus' accountant); `settings.target_epsilon` calibrates σ
    for `settings.total_epochs` such steps. An empty batch still takes a noise-only step.
    """
    population = DataLoader(TensorDataset(torch.arange(num_samples)), batch_size=batch_size)
    plain = torch.optim.SGD(model.parameters(), lr=1.0)
    engine, module, dp_optimizer, _ = _make_private(model, plain, population, settings,
                                                    history=history, steps_per_epoch=1)
    module.train()
    loss_value = 0.0
    try:
        dp_optimizer.zero_grad()
        if len(x) == 0:
            _empty_step(module, dp_optimizer)
        else:
            loss = F.cross_entropy(module(x), y)
            loss.backward()
            loss_value = loss.item()
        dp_optimizer.pre_step()  # clip, sum, noise, scale, account; no weight update
        gradients = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    finally:
        module.cleanup()
    return gradients, _outcome(engine, dp_optimizer, settings, loss=loss_value,
                               num_examples=int(dp_optimizer.expected_batch_size), steps=1)


def per_sample_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                         batch_first: bool = True) -> dict[str, torch.Tensor]:
    """Opacus' per-sample gradients of the cross-entropy, [B, *shape] per parameter name."""
    module = GradSampleModule(model, batch_first=batch_first, loss_reduction="sum")
    try:
        module.zero_grad()
        F.cross_entropy(module(x), y, reduction="sum").backward()
        return {name: p.grad_sample.detach().clone() for name, p in model.named_parameters()}
    finally:
        module.cleanup()
