"""Settings of the event benchmark (`fedsnn bench-events`): thresholds, modes, and what a row
depends on."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from attacks import AttackSettings, spike_modality
from fedsnn.core.data.dvs import parse_event_spec
from fedsnn.tools.bench.config import range_problem

THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
MODES = ("post", "in")
RAW = "raw"  # the post-mode row of the un-binarized dummy


class EventBenchError(ValueError):
    """Settings that cannot run, or an --out folder made with other settings."""


# The lowest value each numeric option accepts (`lr` must be > 0 when given).
EVENT_LOWEST = {"samples": 1, "seed": 0, "iters": 1, "init_std": 0.0, "image_size": 8,
                "judge_epochs": 1, "pictures": 0, "workers": 1}


@dataclass(frozen=True)
class EventBenchConfig:
    """Settings of the event benchmark (see `fedsnn bench-events --help`)."""

    dataset: str
    attacks: tuple[str, ...] = ("dlg", "idlg")
    thresholds: tuple[float, ...] = THRESHOLDS
    modes: tuple[str, ...] = MODES
    samples: int = 100
    seed: int = 0
    iters: int = 50
    optimizer: str = "adam"
    lr: float | None = None
    init_mean: float = 0.1
    init_std: float = 0.01
    image_size: int = 28
    neuron: str = "if"
    judge_epochs: int | None = None
    pictures: int = 3
    workers: int = 1

    def __post_init__(self) -> None:
        if parse_event_spec(self.dataset) is None:
            raise EventBenchError(f"{self.dataset!r} is not an event dataset "
                                  "('dvs-digits[:frames=T]', 'dvsgesture:<dir>[,frames=T]')")
        bad = [a for a in self.attacks if a not in ("dlg", "idlg")] or [
            m for m in self.modes if m not in MODES] or [
            t for t in self.thresholds if not 0.0 < t <= 1.0]
        if bad or not self.attacks or not self.modes:
            raise EventBenchError(f"unknown or empty: {bad or 'attacks/modes'}; expected attacks "
                                  f"from dlg, idlg, modes from {', '.join(MODES)}, thresholds in (0, 1]")
        if self.optimizer not in ("lbfgs", "adam"):
            raise EventBenchError(f"--optimizer {self.optimizer!r}: expected lbfgs or adam")
        for name in (*EVENT_LOWEST, "lr"):
            problem = range_problem(name, getattr(self, name), EVENT_LOWEST, ("lr",))
            if problem is not None:
                raise EventBenchError(problem)

    @property
    def time_steps(self) -> int:
        spec = parse_event_spec(self.dataset)
        assert spec is not None
        return spec.frames

    def settings(self, attack: str, mode: str, threshold: float | None = None) -> AttackSettings:
        """The spike-modality attacker of one run: "post" runs unthresholded (binarized later)."""
        base = AttackSettings(attack=attack, optimizer=self.optimizer, iterations=self.iters,
                              lr=self.lr, init_mean=self.init_mean, init_std=self.init_std,
                              seed=self.seed)
        if mode == "in":
            return spike_modality(base, threshold_mode="in", threshold=float(threshold))
        return spike_modality(base, threshold_mode="none")

    def row_defining(self) -> dict[str, Any]:
        """Settings every finished row depends on (a resumed run must keep them)."""
        data = asdict(self)
        for key in ("samples", "pictures", "workers"):
            data.pop(key)
        return data
