"""GRNN vectorized: K targets' generators trained in one batched optimization (the GRNN side of
the engine in attacks/batched.py).

Each target keeps its own generator: the K generators' weights are stacked into [K, ...] tensors
and run as batched products and `torch.func.vmap` over `functional_call` (BatchNorm without running statistics: in
training mode, the only mode GRNN uses, its output never reads them). The K victims are one
`ReplicatedVictim` and the objective is `matching_objectives`, so target k's loss depends only on
its own generator and the summed loss gives each generator its own gradient. The generator's
optimizer (RMSprop as in GRNN's code, or Adam) is element-wise and every unfinished target is
stepped on every iteration, so torch's optimizer on the stacked weights is K independent ones.
Each target keeps its best-so-far snapshot and stops on its own (converged, diverged, time), as
`attacks.grnn.grnn` in `attacks.matching.optimize` does: its result is the one-at-a-time result
up to floating-point noise. Finished targets leave the batch (their rows are no longer
evaluated); restarts run as further passes over the targets not yet accepted.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call, replace_all_batch_norm_modules_, vmap

from attacks.grnn import Generator, build_generator, to_dummy
from attacks.matching import OPTIMIZER_FACTORIES, stop_threshold
from attacks.rows import RowLog
from attacks.replicated import ReplicatedVictim, matching_objectives, replicate
from attacks.runner import best_of_restarts
from attacks.settings import AttackSettings
from attacks.spiking import as_model_input, dummy_shape, finalize
from attacks.types import Observation, Reconstruction

ELEMENTWISE_OPTIMIZERS = ("rmsprop", "adam")  # L-BFGS's state is not per element
# K for `vectorize=True`: on this machine K = 8 ran 2.2x the one-at-a-time rate and K = 32 only
# 1.3-1.7x (32 generators' weights, gradients and optimizer states, ~370 MB, spill the caches);
# docs/performance.md, "GRNN"
DEFAULT_MAX_BATCH = 8


def supports(settings: AttackSettings) -> bool:
    """Whether GRNN with these settings runs vectorized (an element-wise generator optimizer)."""
    return settings.attack == "grnn" and settings.grnn_optimizer in ELEMENTWISE_OPTIMIZERS


def generator_bytes(observation: Observation, settings: AttackSettings) -> int:
    """Bytes of one target's generator weights (for the engine's memory estimate)."""
    shape = dummy_shape(observation.model_spec, observation.batch_size, settings)
    net, _ = build_generator(observation.model_spec, settings, shape, observation.batch_size, 0)
    return 4 * sum(p.numel() for p in net.parameters())


class GeneratorStack:
    """K copies of one generator, weights stacked along a leading K dimension.

    The label branch and the stem run as batched products (the stem is a transposed convolution
    on a 1x1 map, i.e. a linear map to [C, 4, 4]: run through `vmap` as a grouped transposed
    convolution it took about a third of a K = 32 step), the decoder with `vmap` over
    `functional_call`.
    """

    def __init__(self, template: Generator, k: int) -> None:
        self.decoder = copy.deepcopy(template.decoder)
        replace_all_batch_norm_modules_(self.decoder)
        self.weights = {name: p.detach().unsqueeze(0).repeat(k, *[1] * p.dim()).requires_grad_(True)
                        for name, p in template.named_parameters()}
        self.k = k

    def __call__(self, rows: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(images [n, B, C', H, W], soft labels [n, B, classes]) of the generators `rows`."""
        w = self.weights if len(rows) == self.k else {n: v[rows] for n, v in self.weights.items()}
        logits = torch.einsum("bi,kci->kbc", noise, w["label_branch.weight"])
        soft_labels = F.softmax(logits + w["label_branch.bias"][:, None], dim=-1)
        stem = torch.einsum("bi,kiohw->kbohw", noise, w["stem.0.weight"])
        x = F.glu(stem + w["stem.0.bias"][:, None, :, None, None], dim=2)
        decoder = {n.removeprefix("decoder."): v for n, v in w.items() if n.startswith("decoder.")}
        images = vmap(lambda d, z: functional_call(self.decoder, d, (z,)))(decoder, x)
        return images, soft_labels

    def finite(self, rows: torch.Tensor) -> torch.Tensor:
        """[n] whether each of `rows`' weights are all finite."""
        return torch.stack([torch.isfinite(w[rows].detach()).flatten(1).all(1)
                            for w in self.weights.values()]).all(0)


class _Pass:
    """One restart of GRNN on compatible targets, all K generators in one optimization."""

    def __init__(self, observations: Sequence[Observation], settings: AttackSettings, seed: int,
                 deadline: float | None) -> None:
        self.observations, self.settings, self.deadline = observations, settings, deadline
        self.victim: ReplicatedVictim = replicate(observations)
        spec = observations[0].model_spec
        self.shape = dummy_shape(spec, self.victim.batch_size, settings)
        net, self.noise = build_generator(spec, settings, self.shape, self.victim.batch_size, seed)
        k = len(observations)
        self.generators = GeneratorStack(net, k)
        self.optimizer = OPTIMIZER_FACTORIES[settings.effective_optimizer](
            list(self.generators.weights.values()), settings)
        self.stops = torch.tensor([stop_threshold(o, settings) or -math.inf for o in observations])
        with torch.no_grad():  # the starting point: returned if the loss is never finite
            images, soft = self.generators(torch.arange(k), self.noise)
        self.best_dummy, self.best_soft = to_dummy(images, self.shape).clone(), soft.clone()
        self.log = RowLog(k)

    def _losses(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, soft = self.generators(rows, self.noise)
        dummy = to_dummy(images, self.shape)
        victim = self.victim if len(rows) == self.victim.size else self.victim.subset(rows)
        loss = matching_objectives(victim, self.settings, as_model_input(dummy, self.settings),
                                   dummy, soft_labels=soft)
        return loss, dummy, soft

    def run(self) -> list[Reconstruction]:
        active = torch.arange(len(self.observations))
        for step in self.log.steps(self.settings.iterations, self.deadline, lambda: active):
            self.optimizer.zero_grad()
            loss, dummy, soft = self._losses(active)
            values = loss.detach()
            better = self.log.keep_better(active, values)
            self.best_dummy[active[better]] = dummy.detach()[better]
            self.best_soft[active[better]] = soft.detach()[better]
            loss.sum().backward()
            self.optimizer.step()
            finite = torch.isfinite(values) & self.generators.finite(active)
            self.log.record(active, values, finite, step)
            converged = finite & ((values == 0) | (values <= self.stops[active]))
            self.log.converged(active[converged], step)
            active = active[finite & ~converged]
        return self._results()

    def _results(self) -> list[Reconstruction]:
        inputs = torch.stack([finalize(d, self.settings) for d in self.best_dummy])
        with torch.enable_grad():
            final = matching_objectives(self.victim, self.settings, inputs, inputs,
                                        soft_labels=self.best_soft).detach()
        labels = self.best_soft.argmax(-1)
        results = [self.log.result(row, target_id=o.target_id, attack="grnn", inputs=inputs[row],
                                   labels=labels[row], loss=float(final[row]))
                   for row, o in enumerate(self.observations)]
        return results


def run_grnn(observations: Sequence[Observation], settings: AttackSettings, size: int,
             deadline: float | None) -> list[Reconstruction]:
    """GRNN on compatible targets, `size` at a time: restart r trains every target not yet
    accepted (`accept_loss`) from seed + r; each target keeps its best restart (as
    `attacks.runner.invert_one`). One reconstruction per observation, in order."""
    if not supports(settings):
        raise ValueError(f"vectorized GRNN needs grnn_optimizer in {list(ELEMENTWISE_OPTIMIZERS)}, "
                         f"not {settings.grnn_optimizer!r}")

    def run_pass(pending: list[int], restart: int) -> list[Reconstruction]:
        return [result for start in range(0, len(pending), size)
                for result in _Pass([observations[i] for i in pending[start:start + size]],
                                    settings, settings.seed + restart, deadline).run()]

    return best_of_restarts(observations, settings, deadline, run_pass)

