"""Membership-inference audit of a trained model: a loss / confidence threshold attack.

The auditor holds members (samples some client trained on) and non-members (never trained on).
Each set is split once, by a seeded permutation, into a *reference* half and a *scored* half. The
attack's threshold is chosen on the reference halves only (the one that maximises balanced
accuracy there) and then applied to the scored halves, which also give the threshold-free figures
(AUC, TPR at 1 % and 0.1 % FPR, from sklearn's ROC). A model that leaks nothing gives AUC ≈ 0.5.

Low-FPR figures are only as fine as the number of scored non-members allows: with n of them the
smallest non-zero FPR is 1/n, so `fpr_resolution` is reported beside them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score, roc_auc_score, roc_curve
from torch import nn


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def loss_score(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256
               ) -> np.ndarray:
    """Membership score = −cross-entropy loss (members tend to have lower loss)."""
    losses = F.cross_entropy(_logits(model, x, batch_size), y, reduction="none")
    return (-losses).numpy().astype(np.float64)


def confidence_score(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256
                     ) -> np.ndarray:
    """Membership score = softmax probability of the true label."""
    probabilities = F.softmax(_logits(model, x, batch_size), dim=1)
    return probabilities.gather(1, y.view(-1, 1)).squeeze(1).numpy().astype(np.float64)


SCORES: dict[str, Callable[..., np.ndarray]] = {"loss": loss_score, "confidence": confidence_score}


@dataclass(frozen=True)
class MiaResult:
    """Figures of a threshold attack on the scored halves."""

    score: str
    auc: float
    tpr_at_1pct_fpr: float
    tpr_at_0_1pct_fpr: float
    balanced_accuracy: float      # at the threshold chosen on the reference halves
    threshold: float
    num_members: int              # scored
    num_nonmembers: int           # scored
    fpr_resolution: float         # 1 / num_nonmembers

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def _tpr_at(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """Largest TPR with FPR ≤ target on the ROC (0 when no threshold reaches it)."""
    ok = fpr <= target
    return float(tpr[ok].max()) if ok.any() else 0.0


def _best_threshold(members: np.ndarray, nonmembers: np.ndarray) -> float:
    """The threshold (predict member when score ≥ t) maximising balanced accuracy."""
    candidates = np.unique(np.concatenate([members, nonmembers]))
    best, best_t = -1.0, float(candidates[0])
    for t in candidates:
        value = 0.5 * (float((members >= t).mean()) + float((nonmembers < t).mean()))
        if value > best:
            best, best_t = value, float(t)
    return best_t


def threshold_attack(*, reference_members: np.ndarray, reference_nonmembers: np.ndarray,
                     members: np.ndarray, nonmembers: np.ndarray, score: str = "loss"
                     ) -> MiaResult:
    """Score a threshold attack: threshold from the reference scores, figures from the others.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> r = threshold_attack(reference_members=rng.normal(1, 1, 500),
        ...                      reference_nonmembers=rng.normal(0, 1, 500),
        ...                      members=rng.normal(1, 1, 500), nonmembers=rng.normal(0, 1, 500))
        >>> 0.7 < r.auc < 0.8
        True
    """
    if min(len(reference_members), len(reference_nonmembers), len(members), len(nonmembers)) == 0:
        raise ValueError("membership audit needs members and non-members in both halves")
    threshold = _best_threshold(reference_members, reference_nonmembers)
    truth = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    scores = np.concatenate([members, nonmembers])
    fpr, tpr, _ = roc_curve(truth, scores)
    return MiaResult(
        score=score,
        auc=float(roc_auc_score(truth, scores)),
        tpr_at_1pct_fpr=_tpr_at(fpr, tpr, 0.01),
        tpr_at_0_1pct_fpr=_tpr_at(fpr, tpr, 0.001),
        balanced_accuracy=float(balanced_accuracy_score(truth, scores >= threshold)),
        threshold=threshold,
        num_members=len(members),
        num_nonmembers=len(nonmembers),
        fpr_resolution=1.0 / len(nonmembers),
    )


def audit_membership(model: nn.Module, members: tuple[torch.Tensor, torch.Tensor],
                     nonmembers: tuple[torch.Tensor, torch.Tensor], *, score: str = "loss",
                     reference_fraction: float = 0.5, seed: int = 0) -> MiaResult:
    """Run the threshold attack on `model` with (x, y) members and non-members.

    Args:
        model: a trained classifier, `model(x) -> logits`.
        members: samples the model was trained on.
        nonmembers: samples from the same distribution it never saw.
        score: "loss" or "confidence".
        reference_fraction: share of each set used only to choose the threshold.
        seed: seeds the reference / scored split.
    """
    if score not in SCORES:
        raise ValueError(f"Unknown membership score {score!r}; expected one of {sorted(SCORES)}")
    if not 0.0 < reference_fraction < 1.0:
        raise ValueError(f"Expected argument `reference_fraction` in (0, 1) but got {reference_fraction}")
    generator = torch.Generator().manual_seed(seed)
    halves = []
    for x, y in (members, nonmembers):
        values = SCORES[score](model, x, y)
        order = torch.randperm(len(values), generator=generator).numpy()
        cut = int(round(len(values) * reference_fraction))
        halves.append((values[order[:cut]], values[order[cut:]]))
    (ref_in, in_), (ref_out, out) = halves
    return threshold_attack(reference_members=ref_in, reference_nonmembers=ref_out,
                            members=in_, nonmembers=out, score=score)
