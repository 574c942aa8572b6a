"""Dataset sources, named by a spec string: `digits`, `mnist:<dir>`, `npz:<file>`, `hf:<name>`,
the colour datasets `cifar100:<dir>` (`fedsnn.core.data.cifar`) and `lfw:<dir>` (`fedsnn.core.data.lfw`),
and the event datasets `dvs-digits[:options]`, `dvsgesture:<dir>[,options]` (`fedsnn.core.data.dvs`).

Every source gives an `ImageData`: float tensors in [0, 1], [N, C, H, W] (event datasets: binary
spike frames [N, T, 2, H, W]), integer labels, a train
and a test split, and a note saying what was loaded. Sample ids are indices into the train split;
clients report them and the auditor looks the ground truth up with them.
"""

from __future__ import annotations

import gzip
import logging
import struct
import zlib
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fedsnn.core.data.base import DatasetError, ImageData, _split, _train_test
from fedsnn.core.image_format import resize
from fedsnn.core.data.cifar import load_cifar100
from fedsnn.core.data.lfw import load_lfw
from fedsnn.core.data.dvs import load_dvs_digits, load_dvsgesture

log = logging.getLogger(__name__)

ACCEPTED_FORMS = ("'digits', 'mnist:<dir with IDX files>', 'npz:<file with x, y arrays>', "
                  "'hf:<hugging face dataset name>', 'cifar100:<dir>[,labels=coarse]', "
                  "'lfw:<dir>[,min=N]', 'dvs-digits[:frames=T]', 'dvsgesture:<dir>[,frames=T]'")


def load_digits(image_size: int = 28) -> ImageData:
    """scikit-learn's 1,797 real 8x8 handwritten digits, scaled to [0, 1] and resized; 80/20 split."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    x = resize(x, image_size)
    train_x, train_y, test_x, test_y = _split(x, y, 0.2)
    return ImageData("digits", train_x, train_y, test_x, test_y, 10,
                     note=f"scikit-learn digits: {len(train_x)} train / {len(test_x)} test, "
                          f"8x8 resized to {image_size}x{image_size}",
                     native_size=int(bunch.images.shape[-1]))


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An unsigned-byte IDX file with `ndim` dimensions (3: images [N, H, W]; 1: labels [N])."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
        zero, dtype_code, found = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype_code != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        shape = struct.unpack(f">{found}I", data[4:4 + 4 * found])
        array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * found).reshape(shape)
    except (OSError, ValueError, struct.error, EOFError, zlib.error) as error:
        raise DatasetError(f"mnist: cannot read IDX file {path}: {error}") from None
    if array.ndim != ndim:
        expected = "images [N, H, W]" if ndim == 3 else "labels [N]"
        raise DatasetError(f"mnist: {path} holds an array of shape {array.shape}; expected "
                           f"{expected}")
    return array


def num_classes_of(*labels: torch.Tensor) -> int:
    """The number of classes the labels imply: the largest label + 1 (0 without labels)."""
    present = [y for y in labels if len(y)]
    return max(int(y.max()) for y in present) + 1 if present else 0


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz", stem.replace("-idx", ".idx"), f"{stem.replace('-idx', '.idx')}.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_mnist(folder: str | Path, image_size: int = 28) -> ImageData:
    """Real MNIST from the standard IDX files (gzipped or not) in `folder`.

    Uses whichever splits are there: both; or only one, which is then split 80/20 into
    train and test (the note says so).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"mnist: folder {folder} does not exist; expected IDX files such as "
                           "t10k-images-idx3-ubyte.gz in it")
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    native_size = None  # the side the files hold, before `resize` (capability data-format)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = _find_idx(folder, f"{prefix}-images-idx3-ubyte")
        labels = _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
        if images and labels:
            array = _read_idx(images, 3)
            native_size = int(array.shape[1]) if array.shape[1] == array.shape[2] else None
            x = torch.from_numpy(array.copy()).float().unsqueeze(1) / 255.0
            y = torch.from_numpy(_read_idx(labels, 1).astype(np.int64))
            if len(x) != len(y):
                raise DatasetError(f"mnist: {images.name} has {len(x)} images but "
                                   f"{labels.name} has {len(y)} labels")
            splits[split] = (resize(x, image_size), y)
    if not splits:
        raise DatasetError(f"mnist: no IDX image/label pair in {folder}; expected "
                           "train-images-idx3-ubyte[.gz] + train-labels-idx1-ubyte[.gz] and/or "
                           "t10k-images-idx3-ubyte[.gz] + t10k-labels-idx1-ubyte[.gz]")
    (train_x, train_y, test_x, test_y), only = _train_test(splits)
    if only is None:
        note = f"MNIST from {folder}: train {len(train_x)} / test {len(test_x)} (standard splits)"
    else:
        note = (f"MNIST from {folder}: only the {only} split is present ({len(splits[only][0])} "
                f"images); split 80/20 into train {len(train_x)} / test {len(test_x)}")
    num_classes = num_classes_of(train_y, test_y)
    note += f"; {num_classes} classes (from the labels: largest label + 1)"
    log.info(note)
    return ImageData(f"mnist:{folder}", train_x, train_y, test_x, test_y, num_classes, note=note,
                     native_size=native_size)


def load_hf(name: str, image_size: int = 28) -> ImageData:
    """A Hugging Face image-classification dataset through Flower Datasets (needs the hub)."""
    from flwr_datasets import FederatedDataset
    from flwr_datasets.partitioner import IidPartitioner

    try:
        fds = FederatedDataset(dataset=name, partitioners={"train": IidPartitioner(1)})
        train, test = fds.load_split("train"), fds.load_split("test")
    except Exception as error:  # noqa: BLE001 - any hub/network/format failure is one message
        raise DatasetError(f"hf:{name}: could not load through Flower Datasets ({error})") from None
    image_key = next((k for k in ("image", "img", "pixel_values") if k in train.column_names), None)
    label_key = next((k for k in ("label", "fine_label", "labels") if k in train.column_names), None)
    if image_key is None or label_key is None:
        raise DatasetError(f"hf:{name}: expected an image column and a label column, got "
                           f"{train.column_names}")

    def to_tensors(split: object) -> tuple[torch.Tensor, torch.Tensor]:
        arrays = [np.asarray(img, dtype=np.float32) / 255.0 for img in split[image_key]]
        x = torch.from_numpy(np.stack(arrays))
        x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
        return resize(x, image_size), torch.tensor(split[label_key], dtype=torch.long)

    train_x, train_y = to_tensors(train)
    test_x, test_y = to_tensors(test)
    num_classes = num_classes_of(train_y, test_y)
    return ImageData(f"hf:{name}", train_x, train_y, test_x, test_y, num_classes,
                     note=f"{name} via Flower Datasets: train {len(train_x)} / test {len(test_x)}")


def _npz_images(archive: Mapping[str, np.ndarray], x_key: str, y_key: str, path: Path,
                image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = np.asarray(archive[x_key]), np.asarray(archive[y_key])
    if x.ndim not in (3, 4) or y.ndim != 1 or len(x) != len(y):
        raise DatasetError(f"npz: {path}: expected {x_key} [N, H, W] or [N, C, H, W] and {y_key} "
                           f"[N], got shapes {x.shape} and {y.shape}")
    if x.ndim == 4 and x.shape[1] > 4 and x.shape[-1] <= 4:  # channels last, e.g. [N, 8, 8, 3]
        raise DatasetError(f"npz: {path}: {x_key} has shape {x.shape}, which looks channels-last; "
                           f"expected [N, C, H, W] (np.moveaxis({x_key}, -1, 1))")
    images = torch.from_numpy(x.astype(np.float32))
    if x.dtype == np.uint8:
        images /= 255.0
    images = images.unsqueeze(1) if images.dim() == 3 else images
    return resize(images, image_size), torch.from_numpy(y.astype(np.int64))


def load_npz(path: str | Path, image_size: int = 28) -> ImageData:
    """Images and labels from a NumPy .npz file: `x` ([N, H, W] or [N, C, H, W]; uint8 0-255 or
    floats in [0, 1]) and `y` ([N] integer labels), optionally `x_test` and `y_test`.

    Without test arrays every sample is in the train split and the test split is empty (the
    form for an edge node's own data, `data-path`).
    """
    path = Path(path).expanduser()
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "x" not in archive or "y" not in archive:
                raise DatasetError(f"npz: {path} has arrays {sorted(archive.files)}; expected 'x' "
                                   "(images) and 'y' (labels), optionally 'x_test' and 'y_test'")
            train_x, train_y = _npz_images(archive, "x", "y", path, image_size)
            if "x_test" in archive and "y_test" in archive:
                test_x, test_y = _npz_images(archive, "x_test", "y_test", path, image_size)
            else:
                test_x, test_y = train_x[:0], train_y[:0]
    except DatasetError:
        raise
    except (OSError, ValueError) as error:
        raise DatasetError(f"npz: cannot read {path}: {error}") from None
    num_classes = num_classes_of(train_y, test_y)
    return ImageData(f"npz:{path}", train_x, train_y, test_x, test_y, num_classes,
                     note=f"{path}: train {len(train_x)} / test {len(test_x)}")


def dataset_spec(location: str) -> str:
    """A dataset spec for a node's `data-path`: a spec as is, a folder as `mnist:<folder>`, a
    .npz file as `npz:<file>`.

    Example:
        >>> dataset_spec("/data/node3.npz")
        'npz:/data/node3.npz'
    """
    kind = location.partition(":")[0]
    if kind in SOURCES:
        return location
    if location.endswith(".npz"):
        return f"npz:{location}"
    return f"mnist:{location}"


SOURCES: dict[str, Callable[[str, int], ImageData]] = {
    "digits": lambda _arg, size: load_digits(size),
    "mnist": load_mnist,
    "npz": load_npz,
    "hf": load_hf,
    "cifar100": load_cifar100,
    "lfw": load_lfw,
    "dvs-digits": load_dvs_digits,
    "dvsgesture": load_dvsgesture,
}
ARGUMENT = {"digits": "none", "dvs-digits": "optional"}  # the others require one


@lru_cache(maxsize=4)
def load_dataset(spec: str, image_size: int = 28) -> ImageData:
    """Load the dataset named by `spec` (cached per process).

    Raises:
        DatasetError: unknown form, missing folder or unreadable files, in one line.

    Example:
        >>> load_dataset("digits").train_x.shape
        torch.Size([1438, 1, 28, 28])
    """
    kind, _, argument = spec.partition(":")
    rule = ARGUMENT.get(kind, "required")
    if kind not in SOURCES or (rule == "required" and not argument) or (rule == "none" and argument):
        raise DatasetError(f"Unknown dataset {spec!r}; expected one of {ACCEPTED_FORMS}")
    return SOURCES[kind](argument, image_size)
