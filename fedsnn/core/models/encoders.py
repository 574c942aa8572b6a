"""Input encoders for spiking models: batch as the data loader gives it -> time-major [T, B, ...].

- `direct`: the image repeated on each time step (the first layer acts as the encoder).
- `poisson`: rate coding, a spike with probability equal to the pixel intensity, seeded.
- `frames`: the sample is already a sequence [B, T, C, H, W] (event frames); only transposed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class DirectEncoder:
    """Repeat a [B, C, H, W] image on each of `time_steps` steps."""

    def __init__(self, time_steps: int) -> None:
        self.time_steps = time_steps

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _expect_dims(x, 4, "direct")
        return x.unsqueeze(0).expand(self.time_steps, *x.shape)


class PoissonEncoder:
    """Bernoulli(rate=pixel) spikes on each step, from a private seeded generator.

    The draws are the client's secret: an attacker who knows the seed would know the noise.
    Gradients do not flow through the sampling (a spike is 0 or 1).
    """

    def __init__(self, time_steps: int, seed: int = 0) -> None:
        self.time_steps = time_steps
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)

    def reset(self) -> None:
        """Restart the random stream (same seed -> same spikes)."""
        self._generator.manual_seed(self.seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _expect_dims(x, 4, "poisson")
        rates = x.detach().clamp(0.0, 1.0).cpu()
        draws = torch.rand((self.time_steps, *rates.shape), generator=self._generator)
        return (draws < rates).to(x.dtype).to(x.device)


class FramesEncoder:
    """Event frames [B, T, C, H, W] -> [T, B, C, H, W]."""

    def __init__(self, time_steps: int) -> None:
        self.time_steps = time_steps

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _expect_dims(x, 5, "frames")
        if x.shape[1] != self.time_steps:
            raise ValueError(
                f"frames encoding: expected {self.time_steps} time steps in dim 1, got {x.shape[1]}")
        return x.transpose(0, 1)


def _expect_dims(x: torch.Tensor, dims: int, name: str) -> None:
    if x.dim() != dims:
        raise ValueError(f"{name} encoding expects a {dims}-D batch, got shape {tuple(x.shape)}")


ENCODERS: dict[str, Callable[..., Callable[[torch.Tensor], torch.Tensor]]] = {
    "direct": DirectEncoder,
    "poisson": PoissonEncoder,
    "frames": FramesEncoder,
}


def build_encoder(name: str, time_steps: int, seed: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """The encoder called `name`.

    Example:
        >>> build_encoder("direct", 4)(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([4, 2, 1, 28, 28])
    """
    if name not in ENCODERS:
        raise ValueError(f"Unknown encoding {name!r}; expected one of {sorted(ENCODERS)}")
    if name == "poisson":
        return PoissonEncoder(time_steps, seed=seed)
    return ENCODERS[name](time_steps)
