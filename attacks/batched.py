"""The vectorized DLG/iDLG engine: K independent targets reconstructed in one batched optimization.

Each target keeps its own objective (the K matching losses are summed, so each target's
gradient is its own: attacks/replicated.py), its own optimizer state (attacks/batched_optim.py:
row-wise L-BFGS as torch's, or Adam), its own early stop (stop_loss, L-BFGS stall, divergence)
and its own best-so-far iterate, so each target's result is what `attacks.runner.invert_one`
would have given it, up to floating-point noise. Finished targets leave the batch; a target whose
loss turns non-finite is marked DIVERGED and never disturbs the others.

Entry point: `invert_batched(observations, settings, max_batch=None)`, the same contract as
`attacks.invert` (one reconstruction per observation, in order, never raises). Restarts and
`accept_loss` work as in the runner; the time budget applies to each chunk of targets as a whole;
`Reconstruction.seconds` is the chunk's wall time divided by its size (amortized).

Example:
    >>> recs = invert_batched(observations, AttackSettings(attack="idlg"))  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attacks.batched_optim import BatchedAdam, BatchedLBFGS
from attacks.idlg import infer_labels
from attacks.matching import STALL_STEPS, stop_threshold, total_variation
from attacks.replicated import (ReplicatedVictim, compatible_key, per_target_distance,
                                per_target_gradients, replicate, replicated_logits)
from attacks.runner import rank, relative_loss
from attacks.settings import AttackSettings
from attacks.spiking import as_model_input, dummy_shape, finalize, init_dummy, project_
from attacks.types import Observation, Reconstruction, Status

SUPPORTED = ("dlg", "idlg")
DEFAULT_MAX_BATCH = 128


def supports(settings: AttackSettings) -> bool:
    """Whether the vectorized engine runs this attack (DLG/iDLG, L-BFGS without line search or Adam)."""
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
        weights = {name: w.requires_grad_(name in victim.attacked) for name, w in victim.weights.items()}
        dummy, label_logits = self.split(z)
        inputs = as_model_input(dummy, self.settings) if model_input else dummy
        logits = replicated_logits(victim, weights, inputs)
        n, batch, classes = logits.shape
        if label_logits is None:
            labels = self.labels[rows].reshape(-1)  # type: ignore[index]
            client_loss = F.cross_entropy(logits.reshape(-1, classes), labels, reduction="none")
        else:
            soft = F.softmax(label_logits, dim=-1).reshape(-1, classes)
            client_loss = torch.sum(-soft * F.log_softmax(logits.reshape(-1, classes), -1), -1)
        gradients = per_target_gradients(victim, weights, client_loss.reshape(n, batch).mean(1))
        objective = per_target_distance(gradients, victim.observed, self.settings.distance)
        if self.settings.tv_weight > 0:
            objective = objective + self.settings.tv_weight * torch.stack(
                [total_variation(image) for image in dummy])
        return objective

    def value_and_grad(self, rows: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = z.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            loss = self.losses(rows, z)
            (gradient,) = torch.autograd.grad(loss.sum(), z)
        return loss.detach(), gradient


@dataclass
class Track:
    """Per-target bookkeeping of the optimization loop (as `attacks.matching.optimize`)."""

    best_loss: torch.Tensor
    best_z: torch.Tensor
    history: list[list[float]]
    status: list[Status]
    message: list[str]

    def record(self, rows: torch.Tensor, loss: torch.Tensor, z: torch.Tensor) -> None:
        better = torch.isfinite(loss) & (loss < self.best_loss[rows])
        self.best_loss[rows[better]] = loss[better]
        self.best_z[rows[better]] = z[better]


def _project_rows(problem: Problem, z: torch.Tensor) -> None:
    dummy, _ = problem.split(z)
    project_(dummy, problem.settings)
    z[:, :problem.split_at] = dummy.reshape(len(z), -1)


def run_restart(observations: Sequence[Observation], settings: AttackSettings, *, seed: int,
                deadline: float | None = None) -> list[Reconstruction]:
    """One restart of DLG/iDLG on compatible observations, vectorized; see the module docstring.

    Raises:
        ValueError: the observations cannot share a replicated victim, or the attack is not
            supported.
    """
    if not supports(settings):
        raise ValueError(f"the vectorized engine runs {list(SUPPORTED)} (no L-BFGS line search), "
                         f"not {settings.attack!r}")
    started = time.monotonic()
    victim = replicate(observations)
    k, spec = len(observations), observations[0].model_spec
    shape = dummy_shape(spec, victim.batch_size, settings)
    generator = torch.Generator().manual_seed(seed)
    start = [init_dummy(shape, settings, generator).detach().reshape(-1)]
    labels = None
    if settings.attack == "idlg":
        labels = torch.stack([infer_labels(o) for o in observations])
    else:
        start.append(torch.randn((victim.batch_size, spec.num_classes), generator=generator).reshape(-1))
    z = torch.cat(start).repeat(k, 1)
    problem = Problem(victim, settings, shape, labels)
    stops = torch.tensor([stop_threshold(o, settings) or -math.inf for o in observations])
    track = Track(torch.full((k,), math.inf), z.clone(), [[] for _ in range(k)],
                  [Status.OK] * k, [""] * k)

    def evaluate(rows: torch.Tensor, z_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, gradient = problem.value_and_grad(rows, z_rows)
        track.record(rows, loss, z_rows)
        return loss, gradient

    lbfgs = settings.optimizer == "lbfgs"
    optimizer = (BatchedLBFGS(z, settings.effective_lr, settings.lbfgs_max_eval) if lbfgs
                 else BatchedAdam(z, settings.effective_lr))
    active = torch.arange(k)
    unchanged = torch.zeros(k, dtype=torch.long)
    for step in range(settings.iterations):
        if deadline is not None and time.monotonic() > deadline:
            for row in active.tolist():
                track.status[row] = Status.TIMEOUT
                track.message[row] = f"time budget ran out after {step} steps"
            break
        loss = optimizer.step(active, evaluate)
        for row, value in zip(active.tolist(), loss.tolist(), strict=True):
            track.history[row].append(value)
        finite = torch.isfinite(loss) & torch.isfinite(z[active]).all(1)
        for row in active[~finite].tolist():
            track.status[row] = Status.DIVERGED
            track.message[row] = f"non-finite loss at step {step}; kept the best iterate"
        if not lbfgs:
            z[active] = _project_now(problem, z[active])
        repeat = torch.tensor([len(track.history[r]) > 1 and track.history[r][-1] == track.history[r][-2]
                               for r in active.tolist()], dtype=torch.bool)
        unchanged[active] = torch.where(repeat, unchanged[active] + 1, 0)
        stalled = (unchanged[active] >= STALL_STEPS) if lbfgs else torch.zeros_like(repeat)
        converged = (loss == 0) | (loss <= stops[active])
        for row in active[finite & stalled].tolist():
            track.message[row] = f"L-BFGS stalled (loss unchanged for {STALL_STEPS} steps) at step {step}"
        for row in active[finite & ~stalled & converged].tolist():
            track.message[row] = track.message[row] or f"converged at step {step}"
        active = active[finite & ~stalled & ~converged]
        if not active.numel():
            break
    return _results(observations, problem, track, settings, time.monotonic() - started)


def _project_now(problem: Problem, z: torch.Tensor) -> torch.Tensor:
    z = z.clone()
    _project_rows(problem, z)
    return z


def _results(observations: Sequence[Observation], problem: Problem, track: Track,
             settings: AttackSettings, seconds: float) -> list[Reconstruction]:
    """Each target's best iterate, projected and finalized, with its matching loss."""
    k = len(observations)
    never = ~torch.isfinite(track.best_loss)  # never finite: the starting point (best_z's init)
    best = track.best_z.clone()
    _project_rows(problem, best)
    dummy, label_logits = problem.split(best)
    inputs = torch.stack([finalize(d, settings) for d in dummy])
    best[:, :problem.split_at] = inputs.reshape(k, -1)
    rows = torch.arange(k)
    with torch.enable_grad():
        final = problem.losses(rows, best.clone().requires_grad_(True), model_input=False).detach()
    final = torch.where(torch.isfinite(final), final, math.inf)
    labels = problem.labels if label_logits is None else label_logits.argmax(-1)
    results = []
    for i, observation in enumerate(observations):
        status, message = track.status[i], track.message[i]
        if bool(never[i]):
            status = Status.DIVERGED
            message = message or "the loss was never finite; returned the starting point"
        results.append(Reconstruction(
            target_id=observation.target_id, attack=settings.attack, inputs=inputs[i],
            labels=labels[i].clone(), matching_loss=float(final[i]), loss_history=track.history[i],
            status=status, message=message, seconds=seconds / k))
    return results


def auto_batch(observation: Observation, settings: AttackSettings, memory_fraction: float = 0.25
               ) -> int:
    """K from memory: as many targets as fit in `memory_fraction` of the available RAM, by a rough
    per-target estimate (L-BFGS history, 200 dummy-sized tensors, plus 20 MB of activations and
    double-backward graph per target), capped at DEFAULT_MAX_BATCH."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return DEFAULT_MAX_BATCH
    per_target = 4 * math.prod(dummy_shape(observation.model_spec, observation.batch_size, settings))
    per_target = per_target * (200 if settings.optimizer == "lbfgs" else 4) + 20 * 2 ** 20
    return max(1, min(DEFAULT_MAX_BATCH, int(available * memory_fraction // per_target)))


def _failed_each(observations: Sequence[Observation], settings: AttackSettings, seed: int,
                 deadline: float | None, error: Exception) -> list[Reconstruction]:
    """A batch that raised: run its targets one at a time, so one bad target fails alone."""
    from attacks import ATTACKS  # the per-sample path; imported late (attacks imports this module)
    from attacks.runner import failed_reconstruction

    if len(observations) == 1:
        detail = traceback.format_exception_only(type(error), error)[-1].strip()
        return [failed_reconstruction(observations[0], settings, detail)]
    results = []
    for observation in observations:
        try:
            results.append(ATTACKS[settings.attack](observation, settings, seed=seed, deadline=deadline))
        except Exception as single_error:  # noqa: BLE001 - contained per target
            detail = traceback.format_exception_only(type(single_error), single_error)[-1].strip()
            results.append(failed_reconstruction(observation, settings, detail))
    return results


def _invert_chunk(observations: Sequence[Observation], settings: AttackSettings) -> list[Reconstruction]:
    """Restarts over one chunk of compatible targets, as `attacks.runner.invert_one` per target."""
    started = time.monotonic()
    deadline = None if settings.time_budget_s is None else started + settings.time_budget_s
    best: list[Reconstruction | None] = [None] * len(observations)
    pending = list(range(len(observations)))
    for restart in range(settings.restarts):
        if restart and deadline is not None and time.monotonic() > deadline:
            break
        batch = [observations[i] for i in pending]
        seed = settings.seed + restart
        try:
            candidates = run_restart(batch, settings, seed=seed, deadline=deadline)
        except Exception as error:  # noqa: BLE001 - a failing batch must never stop the caller
            candidates = _failed_each(batch, settings, seed, deadline, error)
        still = []
        for i, candidate in zip(pending, candidates, strict=True):
            candidate.restart = restart
            current = best[i]
            if current is None or rank(candidate) < rank(current):
                best[i] = current = candidate
            if not (settings.accept_loss is not None and current.status != Status.FAILED
                    and relative_loss(current, observations[i], settings) <= settings.accept_loss):
                still.append(i)
        pending = still
        if not pending:
            break
    return [b for b in best if b is not None]


def invert_batched(observations: Sequence[Observation], settings: AttackSettings,
                   max_batch: int | None = None) -> list[Reconstruction]:
    """DLG/iDLG on many targets, K at a time (K = `max_batch`, or `auto_batch`); compatible
    targets (same model spec, batch size, observed gradient names) share a batch. One
    reconstruction per observation, in order; never raises for a failing target."""
    if not supports(settings):
        raise ValueError(f"the vectorized engine runs {list(SUPPORTED)} (no L-BFGS line search), "
                         f"not {settings.attack!r}")
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, observation in enumerate(observations):
        groups.setdefault(compatible_key(observation), []).append(i)
    results: list[Reconstruction | None] = [None] * len(observations)
    for indices in groups.values():
        size = max_batch or auto_batch(observations[indices[0]], settings)
        for begin in range(0, len(indices), size):
            chunk = indices[begin:begin + size]
            for i, result in zip(chunk, _invert_chunk([observations[i] for i in chunk], settings),
                                 strict=True):
                results[i] = result
    return [r for r in results if r is not None]
