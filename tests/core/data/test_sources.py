"""Dataset sources: embedded digits, MNIST IDX files, bad specs."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from fedsnn.core.data import DatasetError, load_dataset
from fedsnn.core.data.sources import load_mnist


def test_digits_is_real_scaled_resized_and_split_the_same_way_every_time() -> None:
    data = load_dataset("digits")
    assert data.train_x.shape == (1438, 1, 28, 28) and data.test_x.shape == (359, 1, 28, 28)
    assert data.train_x.min() >= 0 and data.train_x.max() <= 1 and data.num_classes == 10
    assert set(data.train_y.unique().tolist()) == set(range(10))
    load_dataset.cache_clear()
    again = load_dataset("digits")
    assert torch.equal(data.test_y, again.test_y)


def test_digits_size_is_configurable() -> None:
    assert load_dataset("digits", 16).train_x.shape[-2:] == (16, 16)


def test_shared_mnist_test_set_is_split_and_reported(mnist_dir: Path) -> None:
    data = load_mnist(mnist_dir)
    assert len(data.train_x) + len(data.test_x) == 10_000
    assert "only the test split" in data.note
    assert data.train_x.shape[1:] == (1, 28, 28) and 0.0 <= float(data.train_x.mean()) <= 0.2


def _write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_with_both_splits_uses_the_standard_split(tmp_path: Path, compress: bool) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), compress)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, (n,)), compress)
    data = load_mnist(tmp_path)
    assert len(data.train_x) == 30 and len(data.test_x) == 10 and "standard splits" in data.note


def test_mnist_missing_folder_or_files_fail_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_mnist(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no IDX image/label pair"):
        load_mnist(tmp_path)


def test_corrupt_idx_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"garbage!")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"garbage!")
    with pytest.raises(DatasetError, match="cannot read IDX file"):
        load_mnist(tmp_path)


@pytest.mark.parametrize("spec", ["mnist", "cifar10", "digits:extra", "hf:", ""])
def test_bad_spec_names_the_accepted_forms(spec: str) -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset(spec)
    message = str(info.value)
    assert "\n" not in message and "'digits'" in message and "mnist:<dir" in message


def test_hf_source_converts_a_flower_datasets_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub is out of reach here: stand in for FederatedDataset with in-memory splits in the
    shape Flower Datasets returns (PIL images, integer labels), and check the conversion."""
    from datasets import Dataset
    from PIL import Image

    rng = np.random.default_rng(0)

    def split(n: int) -> Dataset:
        images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]
        return Dataset.from_dict({"img": images, "fine_label": list(range(n))})

    class FakeFederatedDataset:
        def __init__(self, dataset: str, partitioners: dict) -> None:
            assert dataset == "uoft-cs/cifar100"

        def load_split(self, name: str) -> Dataset:
            return split(6 if name == "train" else 3)

    monkeypatch.setattr("flwr_datasets.FederatedDataset", FakeFederatedDataset)
    data = load_dataset("hf:uoft-cs/cifar100", 16)
    assert data.train_x.shape == (6, 3, 16, 16) and data.test_x.shape == (3, 3, 16, 16)
    assert data.num_classes == 6 and 0 <= float(data.train_x.min()) and float(data.train_x.max()) <= 1


def test_hf_source_failure_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("no route to the hub")

    monkeypatch.setattr("flwr_datasets.FederatedDataset", offline)
    with pytest.raises(DatasetError, match=r"^hf:ylecun/mnist: could not load through Flower "
                                           r"Datasets \(no route to the hub\)$"):
        load_dataset("hf:ylecun/mnist")


def _idx_pair(folder: Path, labels: np.ndarray, images: np.ndarray | None = None,
              prefix: str = "t10k") -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (len(labels), 8, 8)) if images is None else images
    _write_idx(folder / f"{prefix}-images-idx3-ubyte", images, compress=False)
    _write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, compress=False)


def test_a_corrupt_gzip_idx_file_is_one_line_naming_the_path(tmp_path: Path) -> None:
    payload = struct.pack(">HBBIII", 0, 0x08, 3, 50, 8, 8) + bytes(range(256)) * 13
    packed = bytearray(gzip.compress(payload))
    packed[15:40] = b"\xff" * 25  # inside the deflate stream
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(bytes(packed))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(50), compress=False)
    with pytest.raises(DatasetError) as info:
        load_mnist(tmp_path)
    assert "t10k-images-idx3-ubyte.gz" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("labels,classes", [(np.arange(1, 27).repeat(2), 27),  # EMNIST letters
                                            (np.arange(4).repeat(10), 4)])
def test_idx_classes_come_from_the_labels_and_the_note_says_so(
        tmp_path: Path, labels: np.ndarray, classes: int) -> None:
    _idx_pair(tmp_path, labels)
    data = load_mnist(tmp_path, 8)
    assert data.num_classes == classes
    assert f"{classes} classes (from the labels" in data.note


def test_two_dimensional_idx_images_are_refused_with_their_shape(tmp_path: Path) -> None:
    _idx_pair(tmp_path, np.zeros(6), images=np.zeros((6, 64)))
    with pytest.raises(DatasetError, match=r"shape \(6, 64\); expected images \[N, H, W\]"):
        load_mnist(tmp_path)


def test_mnist_native_size_is_read_from_the_files(tmp_path: Path) -> None:
    # IDX files of 16x16 images, resized to 28: the data-format capability must say 16, not 28
    rng = np.random.default_rng(0)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (10, 16, 16)), False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", rng.integers(0, 10, (10,)), False)
    data = load_mnist(tmp_path, image_size=28)
    assert data.native_size == 16 and data.train_x.shape[-2:] == (28, 28)
