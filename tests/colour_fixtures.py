"""Small colour datasets written in the exact standard formats: CIFAR-100's `cifar-100-python`
pickles and LFW's `<person>/<person>_0001.jpg` folders."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def _class_images(labels: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [N, side, side, 3] images whose colour and stripe pattern depend on the label (so a
    judge can learn them), with noise."""
    n = len(labels)
    base = np.stack([(labels * 37) % 256, (labels * 91) % 256, (labels * 53) % 256], 1)
    rows = np.arange(side)[None, :, None, None]
    stripes = ((rows // (1 + labels[:, None, None, None] % 4)) % 2) * 60
    images = base[:, None, None, :] + stripes + rng.normal(0, 12, (n, side, side, 3))
    return np.clip(images, 0, 255).astype(np.uint8)


def write_cifar100(folder: Path, train: int = 200, test: int = 50, classes: int = 5,
                   seed: int = 0) -> Path:
    """`folder`/cifar-100-python/{train,test,meta}, pickled as the originals are (protocol 2,
    bytes keys, data uint8 [N, 3072] as R, G, B planes); fine labels < `classes`, coarse = fine // 2."""
    rng = np.random.default_rng(seed)
    root = folder / "cifar-100-python"
    root.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", train), ("test", test)):
        fine = rng.integers(0, classes, n)
        images = _class_images(fine, 32, rng)
        batch = {b"filenames": [f"img_{i}.png".encode() for i in range(n)],
                 b"batch_label": f"{name} batch".encode(),
                 b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 2).tolist(),
                 b"data": images.transpose(0, 3, 1, 2).reshape(n, 3072)}
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))
    (root / "meta").write_bytes(pickle.dumps(
        {b"fine_label_names": [f"c{i}".encode() for i in range(100)],
         b"coarse_label_names": [f"s{i}".encode() for i in range(20)]}, protocol=2))
    return folder


def write_lfw(folder: Path, counts: dict[str, int], side: int = 250, seed: int = 0) -> Path:
    """scikit-learn's layout, `folder`/lfw_home/lfw_funneled/<person>/<person>_NNNN.jpg, with
    `counts[person]` JPEG images of `side` x `side` each; returns `folder` (the data home)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = folder / "lfw_home" / "lfw_funneled"
    for label, (person, count) in enumerate(counts.items()):
        (root / person).mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(_class_images(np.full(count, label), side, rng), start=1):
            Image.fromarray(image).save(root / person / f"{person}_{index:04d}.jpg", quality=95)
    return folder
