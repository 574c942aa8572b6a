"""What an honest client does with its data: local training, one-batch gradients, evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fedsnn.core.sampling import epoch_batches


@dataclass(frozen=True)
class TrainResult:
    """Summary of a local training call."""

    loss: float
    num_examples: int
    steps: int


def make_optimizer(name: str, parameters: object, *, lr: float, momentum: float = 0.0
                   ) -> torch.optim.Optimizer:
    """Adam (default: it trains a sigmoid LeNet) or SGD with optional momentum."""
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr)  # type: ignore[arg-type]
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum)  # type: ignore[arg-type]
    raise ValueError(f"Unknown optimizer {name!r}; expected one of ['adam', 'sgd']")


def train_epochs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int,
                 batch_size: int, lr: float, optimizer: str = "adam", momentum: float = 0.0,
                 seed: int = 0) -> TrainResult:
    """Train `epochs` passes over (x, y) with shuffled mini-batches (seeded) and mean CE loss."""
    if len(x) == 0:
        return TrainResult(loss=float("nan"), num_examples=0, steps=0)
    model.train()
    opt = make_optimizer(optimizer, model.parameters(), lr=lr, momentum=momentum)
    total_loss, seen, steps = 0.0, 0, 0
    for batch in epoch_batches(len(x), epochs=epochs, batch_size=batch_size, seed=seed):
        opt.zero_grad()
        loss = F.cross_entropy(model(x[batch]), y[batch])
        loss.backward()
        opt.step()
        total_loss += loss.item() * len(batch)
        seen += len(batch)
        steps += 1
    return TrainResult(loss=total_loss / seen, num_examples=len(x), steps=steps)


def batch_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor
                   ) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and gradient of the mean cross-entropy over one batch, by parameter name (FedSGD)."""
    model.train()
    model.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss.item(), {name: p.grad.detach().clone() for name, p in model.named_parameters()}


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256
             ) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of `model` on (x, y)."""
    if len(x) == 0:
        return float("nan"), float("nan")
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size])
        target = y[start:start + batch_size]
        loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
        correct += int((logits.argmax(1) == target).sum())
    return loss_sum / len(x), correct / len(x)
