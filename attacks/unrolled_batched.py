"""The unrolled FedAvg attack (attacks/unrolled.py) on K replies at once.

The replies of one round share the global weights and the train config; those with the same
model, `num-examples` and local training have dummies of one shape. Their K dummy datasets are
stacked ([K, N, C, H, W]) and their K local trainings replayed in one pass: the grouped-weights
victim of the batched DLG engine (attacks/replicated.py: K weight copies, `groups = K`
convolutions, stock spikingjelly neurons, which `torch.func.vmap` does not go through) runs
inside the same functional replay (`attacks.local_training.simulate_update`) with the K clients'
mean losses summed, so replica k's gradient, and thus its optimizer step, is client k's own.
Each client's replayed update is matched to its own observed update with its own loss
(`per_target_distance`); the dummies (and, with `learn_labels`, their soft labels) move with
row-wise optimizers (attacks/batched_optim.py: Adam, or L-BFGS without line search), and each
client keeps its own best iterate, status, labels and matching loss: what `attacks.invert` gives
it one at a time, up to floating-point noise (tests/attacks/test_unrolled_batched.py). Dummies at
the dataset's native resolution (capability data-format) go through the same resize as there.

Each client visits its dummies in its own order (its shuffle, when the threat model grants it):
every client's visited samples are gathered into one sequence, so the K replays share the batch
boundaries (equal for equal N, batch size and epochs) even when their orders differ.

Replies whose shapes or config differ go into separate groups; a reply that cannot be stacked
(no update or local training, a model the grouped victim cannot run) is attacked one at a time,
as is a chunk whose vectorized run raises. Time budget: `time_budget_s` per reply (all
restarts), as one at a time, pooled: the K replies of a chunk run together until K x
`time_budget_s` after they started, which one at a time would be their worst-case wall time.
Stacking thus changes neither the audit's worst-case wall time nor the time each reply's share
of the work is given. `Reconstruction.seconds` is the chunk's wall time divided by its size
(amortized).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from attacks.batched_optim import BatchedAdam, BatchedLBFGS
from attacks.label_counts_rlu import estimate_label_counts
from attacks.local_training import client_batches, simulate_update
from attacks.matching import total_variation
from attacks.rows import RowLog
from attacks.replicated import (ReplicatedVictim, check_supported, per_target_distance,
                                replicate, replicated_logits, shape_error)
from attacks.runner import best_of_restarts, invert_one
from attacks.settings import AttackSettings
from attacks.spiking import as_model_input, finalize, init_dummy, project_
from attacks.types import LocalTraining, Observation, Reconstruction
from attacks.unrolled import (LABEL_LOGIT, dummy_labels, dummy_side, input_format,
                              refine_reconstruction, unrolled)
from fedsnn.core.image_format import resize
from fedsnn.core.models import build_model

LOG = logging.getLogger(__name__)
# K per chunk by default: one replay holds K x steps x batch activations and their
# double-backward graph (lenet, N = 32, 4 steps: ~30 MB per reply).
DEFAULT_MAX_BATCH = 16
# Stacking pays only while a replay step's work per client is small enough for per-call overhead
# to matter; beyond, the grouped convolutions are slower than K plain ones. One thread, K = 2 / 4
# (benchmarks/unrolled_stack.py, docs/performance.md): lenet with local batches of 8: 1.0-1.9x,
# of 32: 0.93-1.04x; lenet-snn (T = 4) batches of 8: 1.06-1.25x, of 32: 0.74x. So the automatic
# choice stacks up to this many samples x time steps per local batch.
AUTO_MAX_STEP_SAMPLES = 32


def supports(settings: AttackSettings) -> bool:
    """Whether this engine runs the settings: the unrolled attack with Adam, or L-BFGS with fixed
    steps (no line search, no projection between steps), as the batched DLG engine; without
    per-epoch copies (`epoch_prior` > 0 runs one reply at a time, attacks/unrolled.py), a
    learning-rate schedule, a plateau stop, a public-data start or prior, warm steps, a
    smoothed Adam replay or a consensus of restarts (one at a time too)."""
    return settings.attack == "unrolled" and settings.epoch_prior == 0 and (
        settings.lr_schedule == "constant" and settings.plateau_window == 0
        and not settings.public_init and settings.public_prior == "none"
        and settings.warm_steps == 0 and settings.adam_smoothing == 0
        and settings.consensus_restarts == 1) and (
        settings.optimizer == "adam"
        or not (settings.line_search or settings.lbfgs_projection))


def group_key(observation: Observation) -> tuple[object, ...] | None:
    """Replies with equal keys are stacked together (None: attack it alone). The shuffle seed
    is left out: each client's own visiting order is gathered per row."""
    training, delta = observation.training, observation.delta
    if training is None or delta is None:
        return None
    return (observation.model_spec, dummy_side(observation), tuple(sorted(delta)),
            dataclasses.replace(training, shuffle_seed=None))


def stack_error(observation: Observation) -> str | None:
    """Why `observation` cannot be a row of the stacked replay, or None."""
    model = build_model(observation.model_spec)
    try:
        check_supported(model)
    except ValueError as error:
        return str(error)
    parameters = dict(model.named_parameters())
    delta = observation.delta or {}
    if set(delta) != set(parameters) or any(delta[n].shape != p.shape for n, p in parameters.items()):
        return "the update does not cover every parameter with its shape"
    return shape_error(observation, model, [n for n in parameters if n in observation.gradients])


def worth_stacking(observation: Observation) -> bool:
    """Whether the automatic choice stacks this reply: its local batch x time steps is at most
    AUTO_MAX_STEP_SAMPLES (see there)."""
    training, spec = observation.training, observation.model_spec
    if training is None:
        return False
    batch = (training.num_examples if training.update_mode == "gradient"
             else min(training.batch_size, training.num_examples))
    return batch * (spec.time_steps if spec.is_spiking else 1) <= AUTO_MAX_STEP_SAMPLES


def summed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum over the K clients of each one's mean cross-entropy: logits [b, K, classes], labels
    [b, K] (classes) or [b, K, classes] (probabilities, learned soft labels). Its gradient with
    respect to replica k's weights is client k's own."""
    return (F.cross_entropy(logits.flatten(0, 1), labels.flatten(0, 1), reduction="sum")
            / labels.shape[0])


@dataclasses.dataclass
class StackedReplay:
    """K clients' matching objectives: replay each one's local training on its dummies and
    compare with its observed update.

    Attributes:
        victim: the K replicas (weights sent; `observed` holds the observed updates, float64).
        training: the shared local training (batch boundaries; the order is per row).
        orders: [K, S] each client's visited samples, epoch after epoch.
        sizes: the S visits cut into batches (equal for every client).
        labels: [K, N] each client's dummy labels (the estimate; the start of learned ones).
        settings: distance, TV weight, thresholding, learned labels.
        side: the dummies' side (the native size under the data format).
    """

    victim: ReplicatedVictim
    training: LocalTraining
    orders: torch.Tensor
    sizes: list[int]
    labels: torch.Tensor
    settings: AttackSettings
    side: int

    @classmethod
    def build(cls, observations: Sequence[Observation], labels: torch.Tensor,
              settings: AttackSettings) -> StackedReplay:
        victim = replicate(observations)
        names = [n for n, _ in victim.model.named_parameters()]
        # in float64: 1 - cosine of near-parallel float32 updates rounds to exactly 0
        observed = [torch.stack([o.delta[n].double() for o in observations])  # type: ignore[index]
                    for n in names]
        victim = dataclasses.replace(victim, attacked=names, observed=observed)
        visits = [client_batches(o.training) for o in observations]  # type: ignore[arg-type]
        orders = torch.stack([torch.cat(batches) for batches in visits])
        training = observations[0].training
        assert training is not None
        return cls(victim, training, orders, [len(b) for b in visits[0]], labels, settings,
                   dummy_side(observations[0]))

    @property
    def shape(self) -> tuple[int, ...]:
        """One client's dummies: [N, C, side, side]."""
        spec = self.victim.spec
        return (self.training.num_examples, spec.in_channels, self.side, self.side)

    def images(self, dummy: torch.Tensor) -> torch.Tensor:
        """The model-size images of dummies [n, N, C, side, side] (the dataset's resize at the
        native size, as `attacks.unrolled.input_format`)."""
        size = self.victim.spec.image_size
        if self.side == size:
            return dummy
        return resize(dummy.flatten(0, 1), size).unflatten(0, dummy.shape[:2])

    def losses(self, rows: torch.Tensor, dummy: torch.Tensor,
               label_logits: torch.Tensor | None = None) -> torch.Tensor:
        """Matching objective [n] of the clients `rows` at their dummies [n, N, C, side, side]
        and, with learned labels, label logits [n, N, classes] (differentiable in both), as
        `attacks.unrolled.match_update`'s."""
        victim = self.victim if len(rows) == self.victim.size else self.victim.subset(rows)
        within = torch.arange(len(rows))[:, None]
        order = self.orders[rows]
        targets = self.labels[rows] if label_logits is None else label_logits.softmax(-1)
        # time-major [S, n, ...]: the replay cuts dimension 0 into batches
        x = as_model_input(self.images(dummy), self.settings)[within, order].transpose(0, 1)
        y = targets[within, order].transpose(0, 1)
        bounds = torch.tensor([0, *self.sizes]).cumsum(0).tolist()
        batches = [torch.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

        def forward(_model: torch.nn.Module, state: dict[str, torch.Tensor],
                    inputs: torch.Tensor) -> torch.Tensor:
            return replicated_logits(victim, state, inputs.transpose(0, 1)).transpose(0, 1)

        replayed = simulate_update(victim.model, victim.weights, x, y, self.training,
                                   batches=batches, create_graph=True, forward=forward,
                                   criterion=summed_cross_entropy)
        loss = per_target_distance([replayed[n].double() for n in victim.attacked],
                                   victim.observed, self.settings.distance)
        if self.settings.tv_weight > 0:
            loss = loss + self.settings.tv_weight * torch.stack([total_variation(d) for d in dummy])
        return loss


class _Pass:
    """One restart of the unrolled attack on K stacked clients: one optimization of [K, D], each
    row a client's flattened dummies, then (learned labels) its flattened label logits."""

    def __init__(self, observations: Sequence[Observation], settings: AttackSettings, seed: int,
                 deadline: float | None) -> None:
        self.observations, self.settings, self.deadline = observations, settings, deadline
        labels = torch.stack([
            dummy_labels(estimate_label_counts(o, settings.label_counts, seed=seed), seed)
            for o in observations])
        self.replay = StackedReplay.build(observations, labels, settings)
        self.shape = self.replay.shape
        self.split_at = math.prod(self.shape)
        k = len(observations)
        start = init_dummy(self.shape, settings, torch.Generator().manual_seed(seed)).detach()
        rows = [start.reshape(1, -1).repeat(k, 1)]
        if settings.learn_labels:  # as match_update: logits LABEL_LOGIT on each estimated class
            classes = observations[0].model_spec.num_classes
            rows.append((LABEL_LOGIT * F.one_hot(labels, classes).float()).flatten(1))
        self.z = torch.cat(rows, 1)
        self.lbfgs = settings.optimizer == "lbfgs"
        self.optimizer = (BatchedLBFGS(self.z, settings.effective_lr, settings.lbfgs_max_eval)
                          if self.lbfgs else BatchedAdam(self.z, settings.effective_lr))
        self.log = RowLog(k, dtype=torch.float64)
        self.best_z = self.z.clone()

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(dummies [n, N, C, side, side], label logits [n, N, classes] or None) of rows `z`."""
        dummy = z[:, :self.split_at].reshape(len(z), *self.shape)
        if not self.settings.learn_labels:
            return dummy, None
        return dummy, z[:, self.split_at:].reshape(len(z), self.shape[0], -1)

    def _evaluate(self, rows: torch.Tensor, z_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = z_rows.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            loss = self.replay.losses(rows, *self.split(z))
            (gradient,) = torch.autograd.grad(loss.sum(), z)
        loss = loss.detach()
        better = self.log.keep_better(rows, loss)
        self.best_z[rows[better]] = z_rows[better]
        return loss, gradient

    def run(self) -> list[Reconstruction]:
        """The loop of `attacks.matching.optimize`, row by row: best iterate, divergence, the
        L-BFGS stall rule, an exact zero, the deadline."""
        active = torch.arange(len(self.observations))
        for step in self.log.steps(self.settings.iterations, self.deadline, lambda: active):
            loss = self.optimizer.step(active, self._evaluate)
            finite = torch.isfinite(loss) & torch.isfinite(self.z[active]).all(1)
            repeated = self.log.record(active, loss, finite, step)
            if not self.lbfgs:  # the box constraints on the dummies (labels are free)
                moved = self.z[active]
                project_(moved[:, :self.split_at], self.settings)
                self.z[active] = moved
            stalled = finite & repeated if self.lbfgs else torch.zeros_like(repeated)
            self.log.stalled(active[stalled], step)
            converged = finite & ~stalled & (loss == 0)
            self.log.converged(active[converged], step)
            active = active[finite & ~stalled & ~converged]
        return self._results()

    def _results(self) -> list[Reconstruction]:
        k = len(self.observations)
        dummies, label_logits = self.split(self.best_z.clone())
        project_(dummies, self.settings)
        finals = torch.stack([finalize(d, self.settings) for d in dummies])
        with torch.enable_grad():
            final = self.replay.losses(torch.arange(k), finals, label_logits).detach()
        inputs = torch.stack([finalize(d, self.settings) for d in self.replay.images(dummies)])
        labels = self.replay.labels if label_logits is None else label_logits.argmax(-1)
        results = [self.log.result(row, target_id=o.target_id, attack="unrolled",
                                   inputs=inputs[row], labels=labels[row].clone(),
                                   loss=float(final[row]))
                   for row, o in enumerate(self.observations)]
        return results


def _chunk(observations: Sequence[Observation], settings: AttackSettings) -> list[Reconstruction]:
    """Restarts of K stacked clients, each keeping its best restart (as
    `attacks.runner.invert_one`), within the K replies' pooled budget: K x `time_budget_s`."""
    started = time.monotonic()
    deadline = (None if settings.time_budget_s is None
                else started + len(observations) * settings.time_budget_s)
    results = best_of_restarts(observations, settings, deadline, lambda pending, restart: _Pass(
        [observations[i] for i in pending], settings, settings.seed + restart, deadline).run())
    results = [refine_reconstruction(o, r, settings, deadline=deadline)
               for o, r in zip(observations, results, strict=True)]
    for result in results:
        result.seconds = (time.monotonic() - started) / len(results)
    return results


def invert_unrolled(observations: Sequence[Observation], settings: AttackSettings,
                    max_batch: int | None = None) -> list[Reconstruction]:
    """The unrolled attack on each observation, stacking those of one shape K at a time.
    `max_batch` None: the automatic choice, K = DEFAULT_MAX_BATCH, and only replies where
    stacking pays (`worth_stacking`); an int K stacks every reply that can be stacked. One
    reconstruction per observation, in order; never raises for a failing target (those that
    cannot be stacked, and chunks whose stacked run raises, are attacked one at a time)."""
    if not supports(settings):
        raise ValueError("the stacked unrolled attack runs Adam or L-BFGS without line search, "
                         f"not {settings.attack!r} with {settings.optimizer!r}")
    if settings.learn_labels and settings.label_phases > 1:  # phases restart per reply
        return [invert_one(unrolled, o, settings) for o in observations]
    size = max(1, max_batch or DEFAULT_MAX_BATCH)
    results: list[Reconstruction | None] = [None] * len(observations)
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, observation in enumerate(observations):
        key = group_key(observation)
        if (key is None or (max_batch is None and not worth_stacking(observation))
                or stack_error(observation) is not None):
            results[i] = invert_one(unrolled, observation, settings)
        else:
            groups.setdefault(key, []).append(i)
    for indices in groups.values():
        for begin in range(0, len(indices), size):
            chunk = indices[begin:begin + size]
            batch = [observations[i] for i in chunk]
            try:
                done = _chunk(batch, settings)
            except Exception as error:  # noqa: BLE001 - a failing chunk must never stop the caller
                LOG.warning("stacked unrolled attack on %d replies raised (%s: %s); running them "
                            "one at a time", len(batch), type(error).__name__, error)
                done = [invert_one(unrolled, o, settings) for o in batch]
            for i, result in zip(chunk, done, strict=True):
                results[i] = result
    return [r for r in results if r is not None]
