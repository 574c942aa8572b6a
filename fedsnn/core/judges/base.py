"""Judge models: a classifier per dataset that says whether a reconstruction is recognisable.

The study's attack success rate (ASR) is the fraction of reconstructions a judge classifies as
the true label. A judge trains on one split (`split`) to convergence (`fedsnn.core.judges.fit`) and is
measured on the other, beside the majority-class baseline of that split: it never saw the samples
it scores when it is fit on the split the attacked samples are not in (the bench attacks test
samples: split "train"; the in-line audit attacks clients' train samples: split "test"). Judges
are cached on disk, keyed by dataset, split and training settings.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fedsnn.core.data import ImageData
from fedsnn.core.judges.fit import JudgeTraining, fit, is_meaningful
from fedsnn.core.models import ModelSpec, build_model
from fedsnn.core.training import evaluate

JUDGE_ARCHITECTURE = "lenet5"  # a ReLU LeNet-5: 98-99 % on MNIST digits in a few epochs
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Judge:
    """A trained judge and what it is worth.

    Attributes:
        test_accuracy: its accuracy on the held-out split (the one it was not fit on).
        key: its cache key.
        baseline: the accuracy of always answering that split's majority class.
        trials: how many samples the accuracy was measured on.
        split: the split it was fit on ("train" or "test").
        training: how training went (epochs, best epoch, why it stopped, settings).
    """

    model: nn.Module
    test_accuracy: float
    key: str
    baseline: float = math.nan
    trials: int = 0
    split: str = "train"
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def meaningful(self) -> bool:
        """Whether it clearly beats the majority class (`fedsnn.core.judges.fit.is_meaningful`);
        if not, every ASR built on it is flagged "not meaningful"."""
        return is_meaningful(self.test_accuracy, self.baseline, self.trials)

    def card(self) -> dict[str, Any]:
        """What a report states about the judge (audit.json, bench results)."""
        return {"accuracy": self.test_accuracy, "majority-baseline": self.baseline,
                "evaluated-on": self.trials, "trained-on": f"{self.split} split",
                "measured-on": f"{other_split(self.split)} split",
                "asr-meaningful": self.meaningful, "training": self.training}

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Predicted labels of [B, C, H, W] images in [0, 1]."""
        self.model.eval()
        return self.model(images.float().clamp(0, 1)).argmax(1)


def other_split(split: str) -> str:
    return "test" if split == "train" else "train"


def splits(data: ImageData, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                 torch.Tensor]:
    """(fit x, fit y, held-out x, held-out y) for a judge fit on `split`."""
    if split not in SPLITS:
        raise ValueError(f"Unknown judge split {split!r}; expected one of {list(SPLITS)}")
    train, test = (data.train_x, data.train_y), (data.test_x, data.test_y)
    return (*train, *test) if split == "train" else (*test, *train)


def fit_judge(model: nn.Module, data: ImageData, training: JudgeTraining, *, seed: int,
              split: str, key: str, eval_batch_size: int = 256) -> Judge:
    """Fit `model` on `split` (early-stopped) and measure it on the other split."""
    fit_x, fit_y, held_x, held_y = splits(data, split)
    outcome = fit(model, fit_x, fit_y, training, seed=seed, eval_batch_size=eval_batch_size)
    _, accuracy = evaluate(model, held_x, held_y, batch_size=eval_batch_size)
    return Judge(model.eval(), accuracy, key, baseline=majority_accuracy(data, split),
                 trials=len(held_y), split=split,
                 training={"epochs": outcome.epochs, "best-epoch": outcome.best_epoch,
                           "validation-accuracy": outcome.validation_accuracy,
                           "stopped": outcome.stopped, **training.to_dict()})


def majority_accuracy(data: ImageData, split: str = "train") -> float:
    """The accuracy of always guessing the most frequent label of `split`, measured on the other
    split: the floor a judge fit on `split` is read against (a judge trained from scratch on few
    images per class, as for LFW, may barely beat it).

    Example:
        >>> from fedsnn.core.data import load_dataset
        >>> round(majority_accuracy(load_dataset("digits")), 2)  # doctest: +SKIP
        0.1
    """
    _, fit_y, _, held_y = splits(data, split)
    if not len(fit_y) or not len(held_y):
        return float("nan")
    majority = int(torch.bincount(fit_y).argmax())
    return float((held_y == majority).float().mean())


def cache_dir() -> Path:
    """Where judges are cached: $FEDSNN_CACHE or ~/.cache/fedsnn."""
    return Path(os.environ.get("FEDSNN_CACHE", Path.home() / ".cache" / "fedsnn")) / "judges"


def judge_key(data: ImageData, *, epochs: int, seed: int,
              architecture: str = JUDGE_ARCHITECTURE, split: str = "train",
              training: JudgeTraining | None = None) -> str:
    """Dataset name + a hash of the data's shape, content checksum, the split it is fit on and
    the training settings (`epochs`: the most epochs)."""
    fingerprint = json.dumps({
        "dataset": data.name, "shape": list(data.train_x.shape), "classes": data.num_classes,
        "checksum": float(data.train_x.double().sum()), "labels": int(data.train_y.sum()),
        "test-checksum": float(data.test_x.double().sum()), "arch": architecture,
        "epochs": epochs, "seed": seed, "split": split,
        "training": (training or JudgeTraining()).to_dict()}, sort_keys=True)
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
    slug = "".join(c if c.isalnum() else "-" for c in data.name.split("/")[-1])[:40]
    return f"{slug}-{digest}"


def image_spec(data: ImageData) -> ModelSpec:
    return ModelSpec(JUDGE_ARCHITECTURE, in_channels=data.in_channels,
                     num_classes=data.num_classes, image_size=data.image_size)


def train_judge(data: ImageData, *, epochs: int = 40, seed: int = 0, split: str = "train",
                training: JudgeTraining | None = None) -> Judge:
    """Train an image judge on `split` to convergence (at most `epochs` epochs) and measure it
    on the other split (no caching)."""
    training = dataclass_replace(training or JudgeTraining(), max_epochs=epochs)
    return fit_judge(build_model(image_spec(data), seed=seed), data, training, seed=seed,
                     split=split, key=judge_key(data, epochs=epochs, seed=seed, split=split,
                                                training=training))


def cached_judge(directory: Path, key: str, *, build: Callable[[], nn.Module],
                 train: Callable[[], Judge], meta: dict[str, object]) -> Judge:
    """The judge cached as `<key>.pt` + `<key>.json` in `directory`; else `train()`, then cache
    it (weights written atomically; a corrupt entry is retrained)."""
    weights, meta_path = directory / f"{key}.pt", directory / f"{key}.json"
    if weights.is_file() and meta_path.is_file():
        try:
            model = build()
            model.load_state_dict(torch.load(weights, map_location="cpu"))
            card = json.loads(meta_path.read_text())
            return Judge(model.eval(), float(card["test-accuracy"]), key,
                         baseline=float(card["majority-baseline"]), trials=int(card["trials"]),
                         split=str(card["split"]), training=dict(card["training"]))
        except (OSError, RuntimeError, KeyError, ValueError, TypeError):
            pass  # a corrupt (or older) cache entry is retrained below
    judge = train()
    directory.mkdir(parents=True, exist_ok=True)
    tmp = weights.with_suffix(".tmp")
    torch.save(judge.model.state_dict(), tmp)
    os.replace(tmp, weights)
    meta_path.write_text(json.dumps({**meta, "test-accuracy": judge.test_accuracy,
                                     "majority-baseline": judge.baseline, "trials": judge.trials,
                                     "split": judge.split, "training": judge.training}, indent=2))
    return judge
