"""The server's replay of a client's local training, differentiable in the client's data.

`simulate_update` runs the client's optimizer (SGD, SGD with momentum, Adam) functionally over
the client's batches (`torch.func.functional_call`, no module state is changed) and returns the
update w_0 - w_T it would have sent. With `create_graph=True` the update is differentiable in the
inputs, which is what the unrolled attack (`attacks/unrolled.py`) optimizes. Given the client's
true data and batch order it reproduces the real update (`tests/attacks/test_local_training.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from attacks.types import LocalTraining
from fedsnn.core.sampling import epoch_batches

Params = dict[str, torch.Tensor]
# Adam's defaults in torch.optim.Adam, which the clients use.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def client_batches(training: LocalTraining) -> list[torch.Tensor]:
    """The batches the client visits, as indices into its N samples: the real order when the
    shuffle seed is known, otherwise the samples in their own order every epoch (the same dummy
    images reused each epoch, which an attacker without the seed must assume)."""
    if training.update_mode == "gradient":
        return [torch.arange(training.num_examples)]
    return epoch_batches(training.num_examples, epochs=training.epochs,
                         batch_size=training.batch_size, seed=training.shuffle_seed)


class FunctionalOptimizer:
    """One optimizer's update rule on a dict of tensors (out of place, so it stays
    differentiable). Matches torch.optim.SGD (dampening 0, no Nesterov) and torch.optim.Adam;
    with `adam_eps_scale` > 0, Adam's epsilon is that times the mean of sqrt(v_hat) over each
    tensor (detached): a smoothed Adam, no longer the client's (see `simulate_update`)."""

    def __init__(self, training: LocalTraining, adam_eps_scale: float = 0.0) -> None:
        if training.update_mode == "fedavg" and training.optimizer not in ("sgd", "adam"):
            raise ValueError(f"cannot replay optimizer {training.optimizer!r}; expected sgd or adam")
        # FedSGD replies are one plain SGD step whatever the configured optimizer.
        self.kind = "sgd" if training.update_mode == "gradient" else training.optimizer
        self.lr = training.learning_rate
        self.momentum = training.momentum if self.kind == "sgd" else 0.0
        self.adam_eps_scale = adam_eps_scale
        self.state: dict[str, dict[str, torch.Tensor]] = {}
        self.step_count = 0

    def step(self, params: Params, grads: Params) -> Params:
        self.step_count += 1
        update = self._adam if self.kind == "adam" else self._sgd
        return {name: p - update(name, grads[name]) for name, p in params.items()}

    def _sgd(self, name: str, grad: torch.Tensor) -> torch.Tensor:
        if self.momentum == 0:
            return self.lr * grad
        buffer = self.state.get(name)
        buffer = grad if buffer is None else self.momentum * buffer["momentum"] + grad
        self.state[name] = {"momentum": buffer}
        return self.lr * buffer

    def _adam(self, name: str, grad: torch.Tensor) -> torch.Tensor:
        beta1, beta2 = ADAM_BETAS
        state = self.state.get(name, {"m": torch.zeros_like(grad), "v": torch.zeros_like(grad)})
        m = beta1 * state["m"] + (1 - beta1) * grad
        v = beta2 * state["v"] + (1 - beta2) * grad * grad
        self.state[name] = {"m": m, "v": v}
        correction1 = 1 - beta1 ** self.step_count
        correction2_sqrt = (1 - beta2 ** self.step_count) ** 0.5
        # sqrt has an infinite derivative at 0 (a parameter with zero gradient): keep it finite.
        root = torch.where(v > 0, v, torch.full_like(v, 1e-30)).sqrt() / correction2_sqrt
        eps = (ADAM_EPS if self.adam_eps_scale == 0
               else self.adam_eps_scale * root.detach().mean() + ADAM_EPS)
        return (self.lr / correction1) * m / (root + eps)


Forward = Callable[[nn.Module, Params, torch.Tensor], torch.Tensor]
Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def module_forward(model: nn.Module, state: Params, x: torch.Tensor) -> torch.Tensor:
    """Logits of `model` with its parameters and buffers replaced by `state`."""
    return functional_call(model, state, (x,))


def simulate_update(model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor,
                    training: LocalTraining, *, batches: Sequence[torch.Tensor] | None = None,
                    create_graph: bool = False, forward: Forward = module_forward,
                    on_step: Callable[[torch.Tensor], None] | None = None,
                    criterion: Criterion = F.cross_entropy, adam_eps_scale: float = 0.0
                    ) -> Params:
    """The update w_0 - w_T of the client's local training on (x, y), by parameter name.

    Args:
        model: the architecture (its own weights are not used, nor changed).
        params: w_0, the weights the server sent (parameters the client trains; buffers of
            `model` are used as they are).
        x, y: the client's samples (or the attacker's dummies) and labels, N of each.
        training: optimizer, learning rate, momentum, epochs, batch size.
        batches: the visiting order (default `client_batches(training)`).
        create_graph: keep the graph so the update is differentiable in x (not in params).
        forward: how logits are computed from (model, state, inputs).
        on_step: called with each step's logits (detached), e.g. to follow the softmax.
        criterion: the client's loss of (logits, labels) (mean cross-entropy); K clients
            replayed at once (attacks/unrolled_batched.py) sum their K mean losses.
        adam_eps_scale: 0 replays the client's Adam. Above 0 (an attack's surrogate): Adam's
            epsilon becomes this times each tensor's mean sqrt(v_hat). The client's update,
            m_hat / (sqrt(v_hat) + 1e-8), is nearly a sign of the gradient from its first step,
            so its derivative in the inputs is nearly zero; the raised epsilon makes it a soft
            sign whose derivative carries the gradients' sizes. SGD ignores it.
    """
    buffers = dict(model.named_buffers())
    optimizer = FunctionalOptimizer(training, adam_eps_scale)
    current = {name: p.detach().requires_grad_(True) for name, p in params.items()}
    for batch in (client_batches(training) if batches is None else batches):
        logits = forward(model, {**buffers, **current}, x[batch])
        if on_step is not None:
            on_step(logits.detach())
        loss = criterion(logits, y[batch])
        grads = torch.autograd.grad(loss, list(current.values()), create_graph=create_graph)
        stepped = optimizer.step(current, dict(zip(current, grads, strict=True)))
        current = stepped if create_graph else {n: p.detach().requires_grad_(True)
                                                for n, p in stepped.items()}
    return {name: params[name] - current[name] for name in params}
