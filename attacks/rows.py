"""Per-row bookkeeping of a vectorized attack: each row of a [K, D] optimization is one target
(or one restart of it) with its own loss history, best loss, status and message.

The vectorized engines (`attacks.batched`, `attacks.batched_grnn`, `attacks.unrolled_batched`)
share this, so "out of time", "diverged", "stalled" and "converged" read the same everywhere and
match the one-at-a-time loop of `attacks.matching.optimize`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence

import torch

from attacks.matching import STALL_STEPS
from attacks.types import Reconstruction, Status, never_finite


def out_of_time(deadline: float | None) -> bool:
    """Whether a wall-clock deadline (time.monotonic) has passed; never without one."""
    return deadline is not None and time.monotonic() > deadline


class RowLog:
    """Loss history, best loss, status and message of each of K rows."""

    def __init__(self, k: int, *, dtype: torch.dtype = torch.float32) -> None:
        self.best_loss = torch.full((k,), math.inf, dtype=dtype)
        self.history: list[list[float]] = [[] for _ in range(k)]
        self.status: list[Status] = [Status.OK] * k
        self.message: list[str] = [""] * k
        self.unchanged = torch.zeros(k, dtype=torch.long)

    def reset(self, row: int) -> None:
        """Row `row` starts a new job."""
        self.best_loss[row] = math.inf
        self.history[row], self.status[row], self.message[row] = [], Status.OK, ""
        self.unchanged[row] = 0

    def steps(self, iterations: int, deadline: float | None,
              active: Callable[[], torch.Tensor]) -> Iterator[int]:
        """The steps of a loop over the rows `active()` still running: it ends when none is left
        or at `iterations`, and at the deadline, marking the rows still running timed out."""
        for step in range(iterations):
            rows = active()
            if not rows.numel():
                return
            if out_of_time(deadline):
                self.time_out(rows, step)
                return
            yield step

    def keep_better(self, rows: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        """Lower the best loss of `rows` where `loss` is finite and lower; returns that mask."""
        better = torch.isfinite(loss) & (loss < self.best_loss[rows])
        self.best_loss[rows[better]] = loss[better].to(self.best_loss.dtype)
        return better

    def time_out(self, rows: torch.Tensor, steps: Sequence[int] | int) -> None:
        """The deadline passed with `rows` still running, after `steps` steps (each row's own,
        or one count for all)."""
        for i, row in enumerate(rows.tolist()):
            done = steps if isinstance(steps, int) else steps[i]
            self.status[row] = Status.TIMEOUT
            self.message[row] = f"time budget ran out after {done} steps"

    def record(self, rows: torch.Tensor, loss: torch.Tensor, finite: torch.Tensor,
               steps: Sequence[int] | int) -> torch.Tensor:
        """Append `loss` to the rows' histories, mark rows whose `finite` is False diverged at
        `steps`, and count repeated losses (the L-BFGS stall rule). Returns the rows' stall mask
        (loss unchanged for STALL_STEPS steps)."""
        for row, value in zip(rows.tolist(), loss.tolist(), strict=True):
            self.history[row].append(value)
        at = [steps] * len(rows) if isinstance(steps, int) else list(steps)
        for i in (~finite).nonzero().flatten().tolist():
            row = int(rows[i])
            self.status[row] = Status.DIVERGED
            self.message[row] = f"non-finite loss at step {at[i]}; kept the best iterate"
        repeat = torch.tensor([len(self.history[r]) > 1 and self.history[r][-1] == self.history[r][-2]
                               for r in rows.tolist()], dtype=torch.bool)
        self.unchanged[rows] = torch.where(repeat, self.unchanged[rows] + 1, 0)
        return self.unchanged[rows] >= STALL_STEPS

    def stalled(self, rows: torch.Tensor, steps: Sequence[int] | int) -> None:
        at = [steps] * len(rows) if isinstance(steps, int) else list(steps)
        for row, step in zip(rows.tolist(), at, strict=True):
            self.message[row] = f"L-BFGS stalled (loss unchanged for {STALL_STEPS} steps) at step {step}"

    def converged(self, rows: torch.Tensor, steps: Sequence[int] | int) -> None:
        at = [steps] * len(rows) if isinstance(steps, int) else list(steps)
        for row, step in zip(rows.tolist(), at, strict=True):
            self.message[row] = self.message[row] or f"converged at step {step}"

    def result(self, row: int, *, target_id: str, attack: str, inputs: torch.Tensor,
               labels: torch.Tensor, loss: float) -> Reconstruction:
        """Row `row`'s reconstruction: its best iterate's `inputs` and `labels`, the matching loss
        re-evaluated on them, its history, status and message (a row whose loss was never finite
        returned its starting point)."""
        status, message = self.status[row], self.message[row]
        if not math.isfinite(float(self.best_loss[row])):
            status, message = never_finite(status, message)
        return Reconstruction(target_id=target_id, attack=attack, inputs=inputs, labels=labels,
                              matching_loss=loss if math.isfinite(loss) else math.inf,
                              loss_history=self.history[row], status=status, message=message)
