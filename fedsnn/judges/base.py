"""Judge models: a classifier per dataset that says whether a reconstruction is recognisable.

The study's attack success rate (ASR) is the fraction of reconstructions a judge trained on the
dataset's train split classifies as the true label; its clean test accuracy is reported beside
it (the study's Table II). Judges are cached on disk, keyed by dataset and training settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fedsnn.data import ImageData
from fedsnn.models import ModelSpec, build_model
from fedsnn.training import evaluate, train_epochs

JUDGE_ARCHITECTURE = "lenet5"  # a ReLU LeNet-5: 98-99 % on MNIST digits in a few epochs


@dataclass(frozen=True)
class Judge:
    """A trained judge, its clean test accuracy and its cache key."""

    model: nn.Module
    test_accuracy: float
    key: str

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Predicted labels of [B, C, H, W] images in [0, 1]."""
        self.model.eval()
        return self.model(images.float().clamp(0, 1)).argmax(1)


def majority_accuracy(data: ImageData) -> float:
    """Test accuracy of always guessing the train split's most frequent label: the floor a judge's
    clean accuracy is read against (a judge trained from scratch on few images per class, as for
    LFW, may barely beat it).

    Example:
        >>> from fedsnn.data import load_dataset
        >>> round(majority_accuracy(load_dataset("digits")), 2)  # doctest: +SKIP
        0.1
    """
    if not len(data.test_y) or not len(data.train_y):
        return float("nan")
    majority = int(torch.bincount(data.train_y).argmax())
    return float((data.test_y == majority).float().mean())


def cache_dir() -> Path:
    """Where judges are cached: $FEDSNN_CACHE or ~/.cache/fedsnn."""
    return Path(os.environ.get("FEDSNN_CACHE", Path.home() / ".cache" / "fedsnn")) / "judges"


def judge_key(data: ImageData, *, epochs: int, seed: int,
              architecture: str = JUDGE_ARCHITECTURE) -> str:
    """Dataset name + a hash of the data's shape, content checksum and the training settings."""
    fingerprint = json.dumps({
        "dataset": data.name, "shape": list(data.train_x.shape), "classes": data.num_classes,
        "checksum": float(data.train_x.double().sum()), "labels": int(data.train_y.sum()),
        "arch": architecture, "epochs": epochs, "seed": seed}, sort_keys=True)
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
    slug = "".join(c if c.isalnum() else "-" for c in data.name.split("/")[-1])[:40]
    return f"{slug}-{digest}"


def image_spec(data: ImageData) -> ModelSpec:
    return ModelSpec(JUDGE_ARCHITECTURE, in_channels=data.in_channels,
                     num_classes=data.num_classes, image_size=data.image_size)


def train_judge(data: ImageData, *, epochs: int = 8, seed: int = 0, batch_size: int = 64,
                lr: float = 1e-3) -> Judge:
    """Train a judge on the train split and measure it on the test split (no caching)."""
    model = build_model(image_spec(data), seed=seed)
    train_epochs(model, data.train_x, data.train_y, epochs=epochs, batch_size=batch_size, lr=lr,
                 seed=seed)
    _, accuracy = evaluate(model, data.test_x, data.test_y)
    return Judge(model.eval(), accuracy, judge_key(data, epochs=epochs, seed=seed))


def cached_judge(directory: Path, key: str, *, build: Callable[[], nn.Module],
                 train: Callable[[], Judge], meta: dict[str, object]) -> Judge:
    """The judge cached as `<key>.pt` + `<key>.json` in `directory`; else `train()`, then cache
    it (weights written atomically; a corrupt entry is retrained)."""
    weights, meta_path = directory / f"{key}.pt", directory / f"{key}.json"
    if weights.is_file() and meta_path.is_file():
        try:
            model = build()
            model.load_state_dict(torch.load(weights, map_location="cpu"))
            return Judge(model.eval(), float(json.loads(meta_path.read_text())["test-accuracy"]), key)
        except (OSError, RuntimeError, KeyError, ValueError):
            pass  # a corrupt cache entry is retrained below
    judge = train()
    directory.mkdir(parents=True, exist_ok=True)
    tmp = weights.with_suffix(".tmp")
    torch.save(judge.model.state_dict(), tmp)
    os.replace(tmp, weights)
    meta_path.write_text(json.dumps({**meta, "test-accuracy": judge.test_accuracy}, indent=2))
    return judge
