"""CIFAR-100 from fixture files in the exact `cifar-100-python` format, and its bad files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from fedsnn.core.data import DatasetError, load_dataset
from fedsnn.core.data.cifar import load_cifar100
from tests.colour_fixtures import write_cifar100


def test_reads_both_splits_with_fine_labels_and_rgb_planes(tmp_path: Path) -> None:
    write_cifar100(tmp_path, train=40, test=10)
    data = load_dataset(f"cifar100:{tmp_path}", 32)
    assert data.train_x.shape == (40, 3, 32, 32) and data.test_x.shape == (10, 3, 32, 32)
    assert data.num_classes == 100 and data.in_channels == 3
    raw = pickle.loads((tmp_path / "cifar-100-python" / "train").read_bytes(), encoding="bytes")
    # pixel (row 3, col 5) of image 0: red at 3*32+5, green at 1024+…, blue at 2048+…
    expected = np.array([raw[b"data"][0][c * 1024 + 3 * 32 + 5] for c in range(3)]) / 255.0
    assert torch.allclose(data.train_x[0, :, 3, 5], torch.tensor(expected, dtype=torch.float32))
    assert data.train_y.tolist() == raw[b"fine_labels"]


def test_coarse_labels_option_and_resize(tmp_path: Path) -> None:
    write_cifar100(tmp_path, train=20, test=6)
    data = load_cifar100(f"{tmp_path / 'cifar-100-python'},labels=coarse", 28)
    raw = pickle.loads((tmp_path / "cifar-100-python" / "test").read_bytes(), encoding="bytes")
    assert data.num_classes == 20 and data.test_y.tolist() == raw[b"coarse_labels"]
    assert data.train_x.shape == (20, 3, 28, 28)
    assert 0.0 <= float(data.train_x.min()) and float(data.train_x.max()) <= 1.0


def test_one_split_alone_is_split_80_20(tmp_path: Path) -> None:
    write_cifar100(tmp_path, train=50, test=5)
    (tmp_path / "cifar-100-python" / "test").unlink()
    data = load_cifar100(str(tmp_path), 32)
    assert (len(data.train_x), len(data.test_x)) == (40, 10) and "only the train" in data.note


@pytest.mark.parametrize("protocol", [2, 4])
def test_numpy_integer_labels_are_read(tmp_path: Path, protocol: int) -> None:
    """Issue 28: labels pickled as NumPy integers (a list of np.int64) were refused as 'not a
    NumPy array'."""
    write_cifar100(tmp_path, train=20, test=5)
    labels = {}
    for split in ("train", "test"):
        path = tmp_path / "cifar-100-python" / split
        raw = pickle.loads(path.read_bytes(), encoding="bytes")
        labels[split] = list(raw[b"fine_labels"])
        raw[b"fine_labels"] = [np.int64(v) for v in labels[split]]
        path.write_bytes(pickle.dumps(raw, protocol=protocol))
    data = load_cifar100(str(tmp_path), 32)
    assert data.train_y.tolist() == labels["train"] and data.test_y.tolist() == labels["test"]


def _error(spec: str) -> str:
    with pytest.raises(DatasetError) as info:
        load_cifar100(spec, 32)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_truncated_pickle_names_the_file(tmp_path: Path) -> None:
    write_cifar100(tmp_path, train=20, test=5)
    train = tmp_path / "cifar-100-python" / "train"
    train.write_bytes(train.read_bytes()[:1000])
    message = _error(str(tmp_path))
    assert str(train) in message and message.startswith("cifar100: cannot read")


def test_wrong_content_and_code_in_a_pickle_are_refused(tmp_path: Path) -> None:
    write_cifar100(tmp_path, train=20, test=5)
    test = tmp_path / "cifar-100-python" / "test"
    test.write_bytes(pickle.dumps({b"data": np.zeros((3, 10), np.uint8), b"fine_labels": [0, 1, 2]},
                                  protocol=2))
    assert str(test) in _error(str(tmp_path))
    test.write_bytes(pickle.dumps(print, protocol=2))  # a global that is not a NumPy array
    assert "refusing to load" in _error(str(tmp_path))


def test_missing_files_and_bad_options(tmp_path: Path) -> None:
    assert str(tmp_path) in _error(str(tmp_path))
    write_cifar100(tmp_path, train=4, test=2)
    assert "unknown option" in _error(f"{tmp_path},labels=fine,size=3")
    assert "labels='superfine'" in _error(f"{tmp_path},labels=superfine")
