"""The vectorized DLG/iDLG engine: K independent targets reconstructed in one batched optimization
(GRNN's generators: attacks/batched_grnn.py, dispatched from `invert_batched`).

Each target keeps its own objective (the K matching losses are summed, so each target's
gradient is its own: attacks/replicated.py), its own optimizer state (attacks/batched_optim.py:
row-wise L-BFGS as torch's, or Adam), its own early stop (stop_loss, L-BFGS stall, divergence)
and its own best-so-far iterate, so each target's result is what `attacks.runner.invert_one`
would have given it, up to floating-point noise. The batch keeps K targets in flight: a slot
whose target finished (converged, stalled, diverged, out of steps) takes the next target or the next
restart of one not yet accepted, so targets that finish early never leave the batch running at
small K. A target whose loss turns non-finite is marked DIVERGED and never disturbs the others.

Entry point: `invert_batched(observations, settings, max_batch=None)`, the same contract as
`attacks.invert` (one reconstruction per observation, in order, never raises). Restarts and
`accept_loss` work as in the runner; the time budget applies to the call as a whole;
`Reconstruction.seconds` is the call's wall time divided by its number of targets (amortized).

Example:
    >>> recs = invert_batched(observations, AttackSettings(attack="idlg"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attacks import batched_grnn
from attacks.batched_optim import BatchedAdam, BatchedLBFGS
from attacks.dlg import dlg
from attacks.grnn import grnn
from attacks.idlg import idlg, infer_labels
from attacks.matching import stop_threshold
from attacks.rows import RowLog, out_of_time
from attacks.replicated import (ReplicatedVictim, compatible_key, matching_objectives, replicate,
                                shape_error)
from attacks.runner import failed_reconstruction, invert_one, rank, relative_loss
from attacks.settings import AttackSettings
from attacks.spiking import as_model_input, dummy_shape, finalize, init_dummy, project_
from attacks.types import Observation, Reconstruction, Status
from fedsnn.core.models import build_model

LOG = logging.getLogger(__name__)
SUPPORTED = ("dlg", "idlg")  # and "grnn" (attacks/batched_grnn.py)
DEFAULT_MAX_BATCH = 128


def supports(settings: AttackSettings) -> bool:
    """Whether the vectorized engine runs this attack: DLG/iDLG (L-BFGS without line search, or
    Adam) here, GRNN with an element-wise generator optimizer in attacks/batched_grnn.py."""
    if settings.attack == "grnn":
        return batched_grnn.supports(settings)
    return settings.attack in SUPPORTED and not (settings.optimizer == "lbfgs" and settings.line_search)


@dataclass
class Problem:
    """K targets' matching objectives over one [K, D] tensor: the flattened dummy, then (DLG) the
    flattened label logits."""

    victim: ReplicatedVictim
    settings: AttackSettings
    shape: tuple[int, ...]
    labels: torch.Tensor | None  # [K, B] fixed labels (iDLG), None for DLG's soft labels

    @property
    def split_at(self) -> int:
        return math.prod(self.shape)

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(dummies [n, *shape], label logits [n, B, classes] or None)."""
        dummy = z[:, :self.split_at].reshape(len(z), *self.shape)
        if self.labels is not None:
            return dummy, None
        return dummy, z[:, self.split_at:].reshape(len(z), self.victim.batch_size, -1)

    def losses(self, rows: torch.Tensor, z: torch.Tensor, *, model_input: bool = True) -> torch.Tensor:
        """Matching objective [n] of the targets `rows` at `z` [n, D] (differentiable in z)."""
        victim = self.victim if len(rows) == self.victim.size else self.victim.subset(rows)
        dummy, label_logits = self.split(z)
        inputs = as_model_input(dummy, self.settings) if model_input else dummy
        if label_logits is None:
            return matching_objectives(victim, self.settings, inputs, dummy,
                                       labels=self.labels[rows])  # type: ignore[index]
        return matching_objectives(victim, self.settings, inputs, dummy,
                                   soft_labels=F.softmax(label_logits, dim=-1))

    def value_and_grad(self, rows: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = z.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            loss = self.losses(rows, z)
            (gradient,) = torch.autograd.grad(loss.sum(), z)
        return loss.detach(), gradient


@dataclass(frozen=True)
class Job:
    """One restart of one target: `target` indexes the observations, `restart` seeds its start."""

    target: int
    restart: int


class Stream:
    """K slots of one batched optimization over compatible targets (one replicated victim).

    A slot holds one job; when its job ends (converged, stalled, diverged, out of steps or time)
    its result is taken and the slot is refilled with the next job, so the batch stays K wide
    while targets finish at different steps (no stragglers running at small K). A target's next
    restart is queued when its best result so far is not accepted (`accept_loss`), as in
    `attacks.runner.invert_one`.
    """

    def __init__(self, observations: Sequence[Observation], settings: AttackSettings, size: int,
                 deadline: float | None) -> None:
        if not supports(settings):
            raise ValueError(f"the vectorized engine runs {list(SUPPORTED)} (no L-BFGS line search), "
                             f"not {settings.attack!r}")
        self.observations, self.settings, self.deadline = observations, settings, deadline
        k = min(size, len(observations))
        victim = replicate(observations[:k])
        spec = observations[0].model_spec
        self.shape = dummy_shape(spec, victim.batch_size, settings)
        self.idlg = settings.attack == "idlg"
        labels = torch.zeros((k, victim.batch_size), dtype=torch.long) if self.idlg else None
        self.problem = Problem(victim, settings, self.shape, labels)
        self.starts: dict[int, torch.Tensor] = {}
        self.z = self._start(0).repeat(k, 1)
        self.lbfgs = settings.optimizer == "lbfgs"
        self.optimizer = (BatchedLBFGS(self.z, settings.effective_lr, settings.lbfgs_max_eval)
                          if self.lbfgs else BatchedAdam(self.z, settings.effective_lr))
        self.jobs: list[Job | None] = [None] * k
        self.stops = torch.full((k,), -math.inf)
        self.steps = torch.zeros(k, dtype=torch.long)
        self.log = RowLog(k)
        self.best_z = self.z.clone()
        self.queue = deque(Job(i, 0) for i in range(len(observations)))
        self.best: list[Reconstruction | None] = [None] * len(observations)

    def _start(self, restart: int) -> torch.Tensor:
        """The starting point of every target's restart `restart` (as the one-at-a-time attack's)."""
        if restart not in self.starts:
            generator = torch.Generator().manual_seed(self.settings.seed + restart)
            start = [init_dummy(self.shape, self.settings, generator).detach().reshape(-1)]
            if not self.idlg:
                batch, classes = self.problem.victim.batch_size, self.observations[0].model_spec.num_classes
                start.append(torch.randn((batch, classes), generator=generator).reshape(-1))
            self.starts[restart] = torch.cat(start)
        return self.starts[restart]

    def _fill(self, slot: int, job: Job) -> None:
        observation = self.observations[job.target]
        self.problem.victim.assign(slot, observation)
        if self.problem.labels is not None:
            self.problem.labels[slot] = infer_labels(observation)
        self.jobs[slot] = job
        self.z[slot] = self._start(job.restart)
        self.optimizer.reset(torch.tensor([slot]))
        self.stops[slot] = stop_threshold(observation, self.settings) or -math.inf
        self.steps[slot] = 0
        self.log.reset(slot)
        self.best_z[slot] = self.z[slot]

    def _refill(self) -> torch.Tensor:
        """Give every free slot the next queued job; returns the occupied slots."""
        for slot, job in enumerate(self.jobs):
            if job is None and self.queue:
                self._fill(slot, self.queue.popleft())
        return torch.tensor([s for s, job in enumerate(self.jobs) if job is not None], dtype=torch.long)

    def _evaluate(self, rows: torch.Tensor, z_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, gradient = self.problem.value_and_grad(rows, z_rows)
        better = self.log.keep_better(rows, loss)
        self.best_z[rows[better]] = z_rows[better]
        return loss, gradient

    def run(self) -> list[Reconstruction]:
        """Run every job; the best restart per target, in order."""
        settings = self.settings
        active = self._refill()
        while active.numel():
            if out_of_time(self.deadline):
                self.log.time_out(active, self.steps[active].tolist())
                self._finish(active)
                active = self._refill()
                continue
            loss = self.optimizer.step(active, self._evaluate)
            self.steps[active] += 1
            finite = torch.isfinite(loss) & torch.isfinite(self.z[active]).all(1)
            at = (self.steps[active] - 1).tolist()
            repeated = self.log.record(active, loss, finite, at)
            if not self.lbfgs:
                self.z[active] = _project_now(self.problem, self.z[active])
            stalled = repeated if self.lbfgs else torch.zeros_like(repeated)
            converged = (loss == 0) | (loss <= self.stops[active])
            self.log.stalled(active[finite & stalled], [s for s, m in zip(at, (finite & stalled).tolist()) if m])
            self.log.converged(active[finite & ~stalled & converged],
                               [s for s, m in zip(at, (finite & ~stalled & converged).tolist()) if m])
            done = ~finite | stalled | converged | (self.steps[active] >= settings.iterations)
            if bool(done.any()):
                self._finish(active[done])
                active = self._refill()
        return [b for b in self.best if b is not None]

    def _finish(self, slots: torch.Tensor) -> None:
        """Take the results of the jobs in `slots`, keep each target's best, queue restarts."""
        for slot, result in zip(slots.tolist(), _results(self, slots), strict=True):
            job = self.jobs[slot]
            assert job is not None
            self.jobs[slot] = None
            result.restart = job.restart
            current = self.best[job.target]
            if current is None or rank(result) < rank(current):
                self.best[job.target] = current = result
            accepted = (self.settings.accept_loss is not None and current.status != Status.FAILED
                        and relative_loss(current, self.observations[job.target], self.settings)
                        <= self.settings.accept_loss)
            if not accepted and not out_of_time(self.deadline) and job.restart + 1 < self.settings.restarts:
                self.queue.append(Job(job.target, job.restart + 1))


def _project_rows(problem: Problem, z: torch.Tensor) -> None:
    """Box constraints on the dummy part of each row of `z`, in place (labels are free)."""
    project_(z[:, :problem.split_at], problem.settings)


def _project_now(problem: Problem, z: torch.Tensor) -> torch.Tensor:
    z = z.clone()
    _project_rows(problem, z)
    return z


def _results(stream: Stream, slots: torch.Tensor) -> list[Reconstruction]:
    """The jobs in `slots`: each one's best iterate, projected and finalized, with its matching loss."""
    problem, settings = stream.problem, stream.settings
    best = stream.best_z[slots].clone()
    _project_rows(problem, best)
    dummy, label_logits = problem.split(best)
    inputs = torch.stack([finalize(d, settings) for d in dummy])
    best[:, :problem.split_at] = inputs.reshape(len(slots), -1)
    with torch.enable_grad():
        final = problem.losses(slots, best.clone().requires_grad_(True), model_input=False).detach()
    final = torch.where(torch.isfinite(final), final, math.inf)
    labels = problem.labels[slots] if label_logits is None else label_logits.argmax(-1)  # type: ignore[index]
    results = []
    for i, slot in enumerate(slots.tolist()):
        job = stream.jobs[slot]
        assert job is not None
        results.append(stream.log.result(
            slot, target_id=stream.observations[job.target].target_id, attack=settings.attack,
            inputs=inputs[i], labels=labels[i].clone(), loss=float(final[i])))
    return results


def auto_batch(observation: Observation, settings: AttackSettings, memory_fraction: float = 0.25
               ) -> int:
    """K from memory: as many targets as fit in `memory_fraction` of the available RAM, by a rough
    per-target estimate (L-BFGS history, 200 dummy-sized tensors, plus 20 MB of activations and
    double-backward graph per target; GRNN: its generator's weights, gradient and two optimizer
    states instead of the dummies), capped at DEFAULT_MAX_BATCH (GRNN: batched_grnn.DEFAULT_MAX_BATCH)."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return DEFAULT_MAX_BATCH
    if settings.attack == "grnn":  # K = 8 measured fastest: 32 generators spill the CPU caches
        per_target = 4 * batched_grnn.generator_bytes(observation, settings)
        cap = batched_grnn.DEFAULT_MAX_BATCH
    else:
        per_target = 4 * math.prod(dummy_shape(observation.model_spec, observation.batch_size, settings))
        per_target = per_target * (200 if settings.optimizer == "lbfgs" else 4)
        cap = DEFAULT_MAX_BATCH
    per_target += 20 * 2 ** 20
    return max(1, min(cap, int(available * memory_fraction // per_target)))


def _one_at_a_time(observations: Sequence[Observation], settings: AttackSettings
                   ) -> list[Reconstruction]:
    """The per-sample path (restarts, failure containment): for a group whose stream raised."""
    attack = {"dlg": dlg, "idlg": idlg, "grnn": grnn}[settings.attack]  # the attacks of `supports`
    return [invert_one(attack, o, settings) for o in observations]


def _invert_group(observations: Sequence[Observation], settings: AttackSettings, size: int,
                  deadline: float | None) -> list[Reconstruction]:
    """One stream over compatible targets; a target the replicated victim cannot take fails alone,
    and a stream that raises is re-run one target at a time, so only a bad target fails."""
    model = build_model(observations[0].model_spec)
    attacked = [name for name, _ in model.named_parameters() if name in observations[0].gradients]
    results: list[Reconstruction | None] = [None] * len(observations)
    good = []
    for i, observation in enumerate(observations):
        error = shape_error(observation, model, attacked)
        if error:
            results[i] = failed_reconstruction(observation, settings, error)
        else:
            good.append(i)
    if good:
        batch = [observations[i] for i in good]
        try:
            done = (batched_grnn.run_grnn(batch, settings, size, deadline) if settings.attack == "grnn"
                    else Stream(batch, settings, size, deadline).run())
        except Exception as error:  # noqa: BLE001 - a failing batch must never stop the caller
            LOG.warning("vectorized %s on %d targets raised (%s: %s); running them one at a time",
                        settings.attack, len(batch), type(error).__name__, error)
            done = _one_at_a_time(batch, settings)
        for i, result in zip(good, done, strict=True):
            results[i] = result
    return [r for r in results if r is not None]


def invert_batched(observations: Sequence[Observation], settings: AttackSettings,
                   max_batch: int | None = None) -> list[Reconstruction]:
    """DLG/iDLG/GRNN on many targets, K at a time (K = `max_batch`, or `auto_batch`); compatible
    targets (same model spec, batch size, observed gradient names) share a stream whose K slots
    are refilled as targets finish. One reconstruction per observation, in order; never raises
    for a failing target. The time budget (`settings.time_budget_s`) covers the whole call;
    `Reconstruction.seconds` is the call's wall time divided by the number of targets (amortized)."""
    if not supports(settings):
        raise ValueError(f"the vectorized engine runs {list(SUPPORTED)} (no L-BFGS line search) and "
                         f"GRNN (RMSprop or Adam), not {settings.attack!r}")
    started = time.monotonic()
    deadline = None if settings.time_budget_s is None else started + settings.time_budget_s
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, observation in enumerate(observations):
        groups.setdefault(compatible_key(observation), []).append(i)
    results: list[Reconstruction | None] = [None] * len(observations)
    for indices in groups.values():
        size = max_batch or auto_batch(observations[indices[0]], settings)
        for i, result in zip(indices, _invert_group([observations[i] for i in indices], settings,
                                                    size, deadline), strict=True):
            results[i] = result
    done = [r for r in results if r is not None]
    for result in done:
        result.seconds = (time.monotonic() - started) / max(len(done), 1)
    return done
