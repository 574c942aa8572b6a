"""What a benchmark run is: its settings, its rows (attack x model x optimizer), and the attack
settings each row uses."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from attacks import ATTACKS, NEEDS, AttackSettings, PublicData, ThreatModel, refusal
from attacks.settings import OPTIMIZERS
from attacks.threat_model import PUBLIC_DATA
from fedsnn.core.config import ENCODINGS
from fedsnn.core.data.dvs import parse_event_spec
from fedsnn.core.models import MODELS

IMAGE_ENCODINGS = tuple(e for e in ENCODINGS if e != "frames")  # frames: event data only

# Fields that decide the attack set and the victims: every run into one folder must share them.
# (Each row's attack settings are checked separately, so different rows may be run by different
# invocations, even at the same time.)
ATTACK_SET_FIELDS = ("dataset", "samples", "batch_size", "seed", "time_steps", "judge_epochs",
                     "encoding", "image_size")


# The lowest value each numeric option accepts (None, where allowed, means "the default").
LOWEST = {"samples": 1, "batch_size": 1, "seed": 0, "iters": 1, "adam_iters": 1, "grnn_iters": 1,
          "restarts": 1, "lbfgs_max_eval": 1, "time_steps": 1, "judge_epochs": 1,
          "image_size": 8, "grid": 1, "public_size": 0, "decoder_epochs": 1,
          "accept_loss": 0.0, "stop_loss": 0.0, "grnn_tv_weight": 0.0}
POSITIVE = ("adam_lr",)  # > 0


def range_problem(name: str, value: float | None, lowest: dict[str, float] | None = None,
                  positive: tuple[str, ...] = POSITIVE) -> str | None:
    """Why a numeric option's value is out of range (one line), or None; `lowest` and
    `positive` name the bounds (default: `fedsnn bench`'s).

    Example:
        >>> range_problem("iters", -5)
        '--iters: expected a number >= 1, got -5'
    """
    lowest = LOWEST if lowest is None else lowest
    option = "--" + name.replace("_", "-")
    if value is None:
        return None
    if not math.isfinite(value):
        return f"{option}: expected a finite number, got {value}"
    if name in positive and value <= 0:
        return f"{option}: expected a number > 0, got {value}"
    if name in lowest and value < lowest[name]:
        return f"{option}: expected a number >= {lowest[name]}, got {value}"
    return None


DISPLAY_ORDER = {"dlg": 0, "idlg": 1, "grnn": 2, "lbfgs": 0, "adam": 1, "rmsprop": 2}


@dataclass(frozen=True)
class Variant:
    """One row of the table: an attack on a model with an optimizer (GRNN: its generator's)."""

    attack: str
    model: str
    optimizer: str

    @property
    def key(self) -> str:
        return f"{self.attack}/{self.model}/{self.optimizer}"

    @classmethod
    def from_key(cls, key: str) -> Variant:
        attack, model, optimizer = key.split("/")
        return cls(attack, model, optimizer)

    def sort_key(self) -> tuple[int, str, bool, int]:
        """Table order: attack, architecture, ANN before SNN, optimizer."""
        return (DISPLAY_ORDER.get(self.attack, 9), self.model.removesuffix("-snn"),
                self.model.endswith("-snn"), DISPLAY_ORDER.get(self.optimizer, 9))


@dataclass(frozen=True)
class BenchConfig:
    """Settings of `fedsnn bench`; see the command's help for each."""

    dataset: str
    attacks: tuple[str, ...] = ("dlg", "idlg", "grnn")
    models: tuple[str, ...] = ("lenet", "lenet-snn")
    optimizers: tuple[str, ...] = ("lbfgs",)
    samples: int = 100
    batch_size: int = 1
    seed: int = 0
    iters: int = 300
    adam_iters: int | None = None
    grnn_iters: int = 1000
    restarts: int = 1
    accept_loss: float = 1e-4
    stop_loss: float | None = 1e-7
    lbfgs_max_eval: int = 20
    adam_lr: float | None = None
    grnn_tv_weight: float = 1e-3
    lbfgs_projection: bool = False
    time_steps: int = 4
    encoding: str = "direct"
    judge_epochs: int = 40          # the most; early stopping on a validation slice ends sooner
    image_size: int = 28
    grid: int = 8
    public_size: int = 0
    decoder_epochs: int = 40
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in (*LOWEST, *POSITIVE):  # before anything is built or written
            problem = range_problem(name, getattr(self, name))
            if problem is not None:
                raise ValueError(problem)
        for name, values, accepted in (("attacks", self.attacks, sorted(ATTACKS)),
                                       ("models", self.models, list(MODELS)),
                                       ("optimizers", self.optimizers, list(OPTIMIZERS))):
            unknown = [v for v in values if v not in accepted]
            if unknown or not values:
                raise ValueError(f"--{name}: unknown {unknown or 'empty list'}; expected a "
                                 f"comma-separated list from {accepted}")
        if parse_event_spec(self.dataset) is not None:
            raise ValueError(f"--dataset {self.dataset}: an event dataset; its benchmark is "
                             "`fedsnn bench-events`")
        if self.encoding not in IMAGE_ENCODINGS:
            raise ValueError(f"--encoding {self.encoding!r}: expected one of "
                             f"{', '.join(IMAGE_ENCODINGS)}")
        if self.public_size < 0:
            raise ValueError(f"--public-size: expected >= 0, got {self.public_size}")
        needing = [a for a in self.attacks if PUBLIC_DATA in NEEDS[a]]
        if needing and self.public_size == 0:
            raise ValueError(refusal(needing[0], NEEDS[needing[0]], ThreatModel()) + " (grant it "
                             "with --public-size N: the first N train-split images)")
        if self.samples < 1 or self.batch_size < 1 or self.samples % self.batch_size:
            raise ValueError(f"--samples ({self.samples}) must be a positive multiple of "
                             f"--batch-size ({self.batch_size})")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        return data

    def row_defining(self) -> dict[str, Any]:
        """The settings that fix the attack set and the victims (compared when resuming)."""
        return {k: v for k, v in self.to_dict().items() if k in ATTACK_SET_FIELDS}


def variants(config: BenchConfig) -> list[Variant]:
    """The table's rows in display order: attack, then model, then optimizer. GRNN trains a
    generator with its own optimizer (RMSprop, as in its code), so it has one row per model."""
    rows = []
    for attack in config.attacks:
        for model in config.models:
            optimizers = ("rmsprop",) if attack == "grnn" else config.optimizers
            rows += [Variant(attack, model, optimizer) for optimizer in optimizers]
    return rows


def public_data(config: BenchConfig, train_x: torch.Tensor) -> PublicData | None:
    """The public images the bench's attacker holds: the first `public_size` images of the train
    split (the attack set comes from the test split, so they are disjoint); None when 0."""
    if config.public_size == 0:
        return None
    images = train_x[:config.public_size]
    return PublicData(images, f"{config.dataset} train split [:{len(images)}]")


def attack_settings(variant: Variant, config: BenchConfig) -> AttackSettings:
    """The attacker of one row (image modality: gray init, shared over T, pixel clamp)."""
    if variant.attack == "grnn":  # one generator run, as in GRNN's code
        return AttackSettings(attack="grnn", iterations=config.grnn_iters,
                              tv_weight=config.grnn_tv_weight, restarts=1,
                              stop_loss=config.stop_loss, seed=config.seed)
    adam = variant.optimizer == "adam"
    return AttackSettings(
        attack=variant.attack, optimizer=variant.optimizer,
        iterations=(config.adam_iters or config.iters) if adam else config.iters,
        lr=config.adam_lr if adam else None, lbfgs_max_eval=config.lbfgs_max_eval,
        restarts=config.restarts, accept_loss=config.accept_loss, stop_loss=config.stop_loss,
        lbfgs_projection=config.lbfgs_projection, seed=config.seed,
        decoder_epochs=config.decoder_epochs)
