"""RowLog: the per-row bookkeeping the vectorized engines share."""

from __future__ import annotations

import math

import torch

from attacks.matching import STALL_STEPS
from attacks.rows import RowLog
from attacks.types import Status


def test_rows_keep_their_best_and_end_as_the_loop_says() -> None:
    log = RowLog(3)
    rows = torch.arange(3)
    assert log.keep_better(rows, torch.tensor([1.0, math.nan, 2.0])).tolist() == [True, False, True]
    assert log.keep_better(rows, torch.tensor([2.0, 1.0, 1.0])).tolist() == [False, True, True]
    assert log.best_loss.tolist() == [1.0, 1.0, 1.0]

    log.record(rows, torch.tensor([0.5, math.inf, 0.5]), torch.tensor([True, False, True]), 7)
    assert log.status[1] == Status.DIVERGED and "step 7" in log.message[1]
    log.time_out(torch.tensor([2]), [12])
    assert log.status[2] == Status.TIMEOUT and log.message[2] == "time budget ran out after 12 steps"


def test_a_loss_repeated_stall_steps_times_stalls() -> None:
    log = RowLog(1)
    rows, finite = torch.tensor([0]), torch.tensor([True])
    stalled = [bool(log.record(rows, torch.tensor([0.3]), finite, s)) for s in range(STALL_STEPS + 1)]
    assert stalled == [False] * STALL_STEPS + [True]


def test_a_row_never_finite_returns_its_start_and_keeps_a_timeout() -> None:
    log = RowLog(2)
    log.time_out(torch.tensor([1]), 3)
    results = [log.result(r, target_id=str(r), attack="dlg", inputs=torch.zeros(1),
                          labels=torch.zeros(1), loss=math.nan) for r in range(2)]
    assert [r.status for r in results] == [Status.DIVERGED, Status.TIMEOUT]
    assert results[0].matching_loss == math.inf
    assert results[0].message == "the loss was never finite; returned the starting point"


def test_the_loop_ends_with_its_rows_or_at_the_deadline() -> None:
    log, active = RowLog(3), torch.arange(3)
    ran = []
    for step in log.steps(10, None, lambda: active):
        ran.append(step)
        active = active[1:]  # one row finishes each step
    assert ran == [0, 1, 2]
    late = RowLog(2)
    assert list(late.steps(10, 0.0, lambda: torch.arange(2))) == []  # deadline long past
    assert late.status == [Status.TIMEOUT, Status.TIMEOUT]
