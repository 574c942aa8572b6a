"""How every judge is trained and when its ASR means something.

A judge trains on one split of the dataset, to convergence: a seeded slice of that split
(`validation_fraction`) is held out for early stopping (the best epoch's weights are kept, after
`patience` epochs without a better validation accuracy, at `max_epochs`, or when `time_limit_s`
is spent). Its accuracy is then measured on the *other* split, beside the accuracy of always
answering the fit split's majority class there (`fedsnn.core.judges.base.majority_accuracy`). A judge that does not clearly beat that baseline makes
every ASR built on it meaningless (`is_meaningful`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fedsnn.core.metrics import wilson_interval
from fedsnn.core.training import evaluate


@dataclass(frozen=True)
class JudgeTraining:
    """Early-stopped training: Adam on mean cross-entropy."""

    max_epochs: int = 40
    patience: int = 4
    time_limit_s: float = 600.0
    validation_fraction: float = 0.15
    batch_size: int = 64
    lr: float = 1e-3

    def to_dict(self) -> dict[str, float | int]:
        return {"max-epochs": self.max_epochs, "patience": self.patience,
                "time-limit-s": self.time_limit_s, "validation-fraction": self.validation_fraction,
                "batch-size": self.batch_size, "lr": self.lr}


@dataclass(frozen=True)
class FitOutcome:
    """How training ended: epochs run, the best epoch, its validation accuracy, and why."""

    epochs: int
    best_epoch: int
    validation_accuracy: float
    stopped: str


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, training: JudgeTraining, *,
        seed: int, eval_batch_size: int = 256, clock: Callable[[], float] = time.monotonic
        ) -> FitOutcome:
    """Train `model` in place on (x, y) minus a validation slice; keep the best epoch's weights."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=generator)
    n_val = max(1, int(len(x) * training.validation_fraction))
    val, fit_ids = order[:n_val], order[n_val:]
    optimizer = torch.optim.Adam(model.parameters(), lr=training.lr)
    start = clock()
    best = (-1.0, 0, copy.deepcopy(model.state_dict()))
    epoch, stopped = 0, f"max-epochs {training.max_epochs}"
    while epoch < training.max_epochs:
        epoch += 1
        model.train()
        shuffled = fit_ids[torch.randperm(len(fit_ids), generator=generator)]
        for begin in range(0, len(shuffled), training.batch_size):
            batch = shuffled[begin:begin + training.batch_size]
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
        _, accuracy = evaluate(model, x[val], y[val], batch_size=eval_batch_size)
        if accuracy > best[0]:
            best = (accuracy, epoch, copy.deepcopy(model.state_dict()))
        if epoch - best[1] >= training.patience:
            stopped = f"no better validation accuracy for {training.patience} epochs"
            break
        if clock() - start > training.time_limit_s:
            stopped = f"time limit {training.time_limit_s:g} s"
            break
    model.load_state_dict(best[2])
    return FitOutcome(epochs=epoch, best_epoch=best[1], validation_accuracy=best[0],
                      stopped=stopped)


def is_meaningful(accuracy: float, baseline: float, trials: int) -> bool:
    """Does a judge clearly beat the majority class? Yes when the low end of the 95 % Wilson
    interval of its accuracy removes at least half of the baseline's errors:
    lower ≥ baseline + (1 − baseline) / 2.

    Example:
        >>> is_meaningful(0.98, 0.11, 359), is_meaningful(0.30, 0.11, 359)
        (True, False)
    """
    if trials <= 0 or accuracy != accuracy or baseline != baseline:
        return False
    lower, _ = wilson_interval(round(accuracy * trials), trials)
    return lower >= baseline + (1.0 - baseline) / 2.0
