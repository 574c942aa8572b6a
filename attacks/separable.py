"""Factor a fully connected layer's weight gradient into per-input rows: the linear algebra behind
the analytic attack (attacks/analytic.py).

For a layer z = W u + b whose inputs u_k (images, or spike frames) are non-negative, the mean-loss
gradient is

    dL/dW = sum_k d_k u_kᵀ,        dL/db = sum_k d_k,

where d_k is the error vector the k-th input sent back (a per-sample, per-time-step term; the 1/B
of the mean is folded into it). Column j of dL/dW is sum_k u_k[j] d_k: a non-negative combination of
the d_k. A pixel that only one input lights ("private pixel") gives a column parallel to that d_k,
so the d_k are the extreme rays of the cone the columns span. The successive projection algorithm
(SPA, separable NMF) finds them exactly when every input has a private pixel; then

    U = lstsq(A, dL/dW),  c = lstsq(A, dL/db),  u_k = U_k / c_k

recovers each input exactly (A holds the picked columns). With one input (batch 1, direct
encoding) this is x = dL/dW[i] / dL/db[i] for any neuron i, solved over all neurons at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linprog

# Singular values below this fraction of the largest are float32 noise of the observed gradient.
RANK_TOLERANCE = 1e-5
# Columns smaller than this fraction of the largest are too noisy to serve as a cone direction.
ACTIVE_COLUMN_FRACTION = 1e-3


@dataclass(frozen=True)
class Factors:
    """The rows found and how well they explain the observed gradients.

    Attributes:
        rows: [K, D] the recovered inputs u_k (float64), in no particular order.
        weight_residual: ||A U - dL/dW|| / ||dL/dW|| (0 for an exact factorization).
        bias_residual: ||A c - dL/db|| / ||dL/db||.
        rank: the numerical rank of dL/dW (how many inputs left a trace).
        scales: c_k; a row whose |c_k| is tiny relative to the others is unreliable.
    """

    rows: torch.Tensor
    weight_residual: float
    bias_residual: float
    rank: int
    scales: torch.Tensor


def numerical_rank(matrix: torch.Tensor, tolerance: float = RANK_TOLERANCE) -> int:
    """The number of singular values above `tolerance` times the largest (0 for a zero matrix)."""
    values = torch.linalg.svdvals(matrix)
    if values.numel() == 0 or values[0] == 0:
        return 0
    return int((values > tolerance * values[0]).sum())


def _positive_direction(points: torch.Tensor) -> torch.Tensor:
    """A vector f with f . p > 0 for every column p of `points` (unit columns of a pointed cone),
    maximizing the smallest margin (a small linear program)."""
    dim, count = points.shape
    objective = np.zeros(dim + 1)
    objective[-1] = -1.0  # maximize the margin t
    constraints = np.hstack([-points.T.numpy(), np.ones((count, 1))])  # t - f.p <= 0
    result = linprog(objective, A_ub=constraints, b_ub=np.zeros(count),
                     bounds=[(-1.0, 1.0)] * dim + [(None, None)], method="highs")
    if not result.success or result.x[-1] <= 0:
        raise ValueError("the gradient's columns do not span a pointed cone: the layer's inputs are "
                         "not all non-negative, so they cannot be separated")
    return torch.from_numpy(result.x[:dim])


def successive_projection(points: torch.Tensor, count: int) -> list[int]:
    """SPA: indices of `count` columns of `points` that are extreme points of their convex hull
    (the largest column, then the largest after projecting out those picked, and so on)."""
    residual = points.clone()
    picks: list[int] = []
    for _ in range(count):
        index = int(residual.norm(dim=0).argmax())
        picks.append(index)
        direction = residual[:, index] / residual[:, index].norm()
        residual = residual - torch.outer(direction, direction @ residual)
    return picks


def separable_factors(weight_grad: torch.Tensor, bias_grad: torch.Tensor, max_rows: int) -> Factors:
    """Recover the inputs of a fully connected layer from its weight and bias gradients.

    Args:
        weight_grad: dL/dW, [H, D].
        bias_grad: dL/db, [H].
        max_rows: at most this many inputs exist (batch size, times T for spike-frame inputs).

    Returns:
        The rows and their residuals; callers check that the rows are plausible inputs.

    Raises:
        ValueError: the gradient is zero, or its columns are not a non-negative mixture.

    Example:
        >>> d, u = torch.randn(6, 1), torch.rand(1, 5)
        >>> factors = separable_factors(d @ u, d[:, 0], max_rows=1)
        >>> bool(torch.allclose(factors.rows, u.double()))
        True
    """
    weight = weight_grad.detach().double()
    bias = bias_grad.detach().double()
    rank = min(numerical_rank(weight), max_rows)
    if rank == 0:
        raise ValueError("the first layer's weight gradient is zero: nothing to recover")
    norms = weight.norm(dim=0)
    columns = weight[:, norms > ACTIVE_COLUMN_FRACTION * norms.max()]
    if rank == 1:
        picks = [int(columns.norm(dim=0).argmax())]
    else:
        basis = torch.linalg.svd(columns, full_matrices=False)[0][:, :rank]
        reduced = basis.T @ columns
        unit = reduced / reduced.norm(dim=0)
        direction = _positive_direction(unit)
        picks = successive_projection(reduced / (direction @ reduced), rank)
    atoms = columns[:, picks]
    coefficients = torch.linalg.lstsq(atoms, weight).solution
    scales = torch.linalg.lstsq(atoms, bias.unsqueeze(1)).solution[:, 0]
    weight_residual = float((atoms @ coefficients - weight).norm() / weight.norm())
    bias_norm = bias.norm()
    bias_residual = float((atoms @ scales - bias).norm() / bias_norm) if bias_norm > 0 else float("inf")
    with torch.no_grad():
        rows = coefficients / scales.unsqueeze(1)
    return Factors(rows, weight_residual, bias_residual, rank, scales)
