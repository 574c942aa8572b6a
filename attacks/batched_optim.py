"""Optimizers for K independent problems stacked as the rows of one [K, D] tensor.

Each row has its own optimizer state, so a row's trajectory is the one the single-problem
torch optimizer would have taken on it (up to floating-point noise): `BatchedLBFGS` replays
`torch.optim.LBFGS` without line search (DLG/iDLG's setting: fixed steps of `lr`, `max_iter`
evaluations per step, its tolerances, history 100) row by row, including its early exits within a
step; `BatchedAdam` is `torch.optim.Adam`'s element-wise update. Rows that are not stepped (done,
diverged) do not move, and a row with non-finite values never touches another row. `reset(rows)`
gives rows a fresh state, so the engine can hand a finished row to a new target.

`evaluate(index, z_rows) -> (loss [n], gradient [n, D])` evaluates the rows `index` at `z_rows`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Evaluate = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

# torch.optim.LBFGS defaults
TOLERANCE_GRAD = 1e-7
TOLERANCE_CHANGE = 1e-9
HISTORY = 100
CURVATURE_MIN = 1e-10


class BatchedLBFGS:
    """Row-wise `torch.optim.LBFGS(lr, max_iter, line_search_fn=None)`.

    Args:
        z: [K, D] variables, updated in place.
        lr: fixed step length (after the first iteration, which scales it by 1 / |g|_1 as torch does).
        max_iter: evaluations per step (`lbfgs_max_eval`).
        history: curvature pairs kept per row.
    """

    def __init__(self, z: torch.Tensor, lr: float, max_iter: int, history: int = HISTORY) -> None:
        k, dim = z.shape
        self.z, self.lr, self.max_iter, self.max_eval = z, lr, max_iter, max_iter * 5 // 4
        self.history = history
        self.n_iter = torch.zeros(k, dtype=torch.long)
        self.d = torch.zeros(k, dim)
        self.t = torch.zeros(k)
        self.prev_g = torch.zeros(k, dim)
        self.s_mem = torch.zeros(k, history, dim)
        self.y_mem = torch.zeros(k, history, dim)
        self.rho = torch.zeros(k, history)
        self.count = torch.zeros(k, dtype=torch.long)
        self.head = torch.zeros(k, dtype=torch.long)
        self.h_diag = torch.ones(k)

    def reset(self, rows: torch.Tensor) -> None:
        """Fresh optimizer state for `rows` (their next step is a first step, with an empty
        memory: a refilled row must not see its previous target's curvature pairs)."""
        self.n_iter[rows] = 0
        self.s_mem[rows], self.y_mem[rows], self.rho[rows] = 0.0, 0.0, 0.0

    def _remember(self, rows: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> None:
        """Push curvature pairs (y, s) of `rows` where y.s > 1e-10 (oldest dropped when full)."""
        ys = (y * s).sum(1)
        keep = ys > CURVATURE_MIN
        if not bool(keep.any()):
            return
        rows, y, s, ys = rows[keep], y[keep], s[keep], ys[keep]
        head = self.head[rows]
        self.y_mem[rows, head] = y
        self.s_mem[rows, head] = s
        self.rho[rows, head] = 1.0 / ys
        self.head[rows] = (head + 1) % self.history
        self.count[rows] = torch.clamp(self.count[rows] + 1, max=self.history)
        self.h_diag[rows] = ys / (y * y).sum(1)

    def _direction(self, rows: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The two-loop recursion per row: -H g from each row's own history."""
        first = self.n_iter[rows] == 1
        d = -g.clone()
        self.count[rows[first]] = 0
        self.head[rows[first]] = 0
        self.h_diag[rows[first]] = 1.0
        later = ~first
        if not bool(later.any()):
            return d
        sub, gs = rows[later], g[later]
        self._remember(sub, gs - self.prev_g[sub], self.d[sub] * self.t[sub, None])
        count, head = self.count[sub], self.head[sub]
        depth = int(count.max())
        # every row's pairs newest to oldest, gathered once as [depth, n, D] (contiguous per age);
        # rows with fewer pairs get rho = 0 in the missing slots, which makes those entries no-ops
        # (their s and y are zeros or this row's own older pairs, never another target's: reset)
        age = torch.arange(depth)
        slots = (head - 1 - age[:, None]) % self.history  # [depth, n]
        s_all, y_all = self.s_mem[sub, slots], self.y_mem[sub, slots]
        rho = self.rho[sub, slots] * (age[:, None] < count)
        # fused in-place updates: this loop runs up to 200 times per direction on small tensors
        q = -gs
        alpha = torch.zeros(depth, len(sub), 1)
        rho = rho[..., None]
        for i in range(depth):  # newest to oldest
            torch.mul(torch.linalg.vecdot(s_all[i], q)[:, None], rho[i], out=alpha[i])
            q.addcmul_(alpha[i], y_all[i], value=-1.0)
        r = q.mul_(self.h_diag[sub, None])
        for i in reversed(range(depth)):  # oldest to newest
            beta = torch.linalg.vecdot(y_all[i], r)[:, None].mul_(rho[i])
            r.addcmul_(s_all[i], alpha[i] - beta)
        d[later] = r
        return d

    def step(self, rows: torch.Tensor, evaluate: Evaluate) -> torch.Tensor:
        """One `LBFGS.step` for each row in `rows`; returns each row's loss at the step's start."""
        loss, g = evaluate(rows, self.z[rows])
        start_loss = loss.clone()
        going = ~(g.abs().amax(1) <= TOLERANCE_GRAD)
        rows, loss, g = rows[going], loss[going], g[going]
        evals, n_iter = 1, 0
        while rows.numel() and n_iter < self.max_iter:
            n_iter += 1
            self.n_iter[rows] += 1
            first = self.n_iter[rows] == 1
            d = self._direction(rows, g)
            self.prev_g[rows] = g
            prev_loss = loss
            inverse_l1 = 1.0 / g.abs().sum(1)
            t = torch.where(first, torch.where(inverse_l1 < 1.0, inverse_l1, 1.0) * self.lr,
                            torch.full_like(inverse_l1, self.lr))
            self.d[rows], self.t[rows] = d, t
            going = ~((g * d).sum(1) > -TOLERANCE_CHANGE)
            rows, d, t, prev_loss = rows[going], d[going], t[going], prev_loss[going]
            self.z[rows] += t[:, None] * d
            if n_iter == self.max_iter or not rows.numel():
                break
            loss, g = evaluate(rows, self.z[rows])
            evals += 1
            if evals >= self.max_eval:
                break
            going = (~(g.abs().amax(1) <= TOLERANCE_GRAD)
                     & ~((d * t[:, None]).abs().amax(1) <= TOLERANCE_CHANGE)
                     & ~((loss - prev_loss).abs() < TOLERANCE_CHANGE))
            rows, loss, g = rows[going], loss[going], g[going]
        return start_loss


class BatchedAdam:
    """Row-wise `torch.optim.Adam(lr)` (betas 0.9, 0.999, eps 1e-8), each row with its own step
    count (bias correction)."""

    def __init__(self, z: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.z, self.lr, self.betas, self.eps = z, lr, betas, eps
        self.m = torch.zeros_like(z)
        self.v = torch.zeros_like(z)
        self.steps = torch.zeros(len(z), dtype=torch.float64)

    def reset(self, rows: torch.Tensor) -> None:
        """Fresh moments and step count for `rows`."""
        self.m[rows], self.v[rows], self.steps[rows] = 0.0, 0.0, 0.0

    def step(self, rows: torch.Tensor, evaluate: Evaluate) -> torch.Tensor:
        """One Adam step of each row in `rows`; returns the loss evaluated before it."""
        loss, g = evaluate(rows, self.z[rows])
        self.steps[rows] += 1
        beta1, beta2 = self.betas
        m = self.m[rows] * beta1 + (1 - beta1) * g
        v = self.v[rows] * beta2 + (1 - beta2) * g * g
        self.m[rows], self.v[rows] = m, v
        steps = self.steps[rows]
        step_size = (self.lr / (1 - beta1 ** steps)).to(self.z.dtype)[:, None]
        correction2 = torch.sqrt(1 - beta2 ** steps).to(self.z.dtype)[:, None]
        self.z[rows] -= step_size * m / (v.sqrt() / correction2 + self.eps)
        return loss
