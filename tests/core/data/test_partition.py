"""Partitioning with Flower Datasets' partitioners: complete, disjoint, deterministic."""

from __future__ import annotations

import pytest
import torch

from fedsnn.core.data import load_client_data, load_dataset, partition_ids

LABELS = torch.arange(500) % 10


@pytest.mark.parametrize("kind", ["iid", "dirichlet"])
def test_partitions_are_disjoint_and_cover_the_train_split(kind: str) -> None:
    parts = [partition_ids(LABELS, i, 5, kind=kind, alpha=0.5, seed=1) for i in range(5)]
    joined = torch.cat(parts)
    assert len(joined) == len(LABELS) and len(joined.unique()) == len(LABELS)


@pytest.mark.parametrize("kind", ["iid", "dirichlet"])
def test_same_seed_same_partition_other_seed_other_partition(kind: str) -> None:
    a = partition_ids(LABELS, 2, 5, kind=kind, seed=7)
    b = partition_ids(LABELS, 2, 5, kind=kind, seed=7)
    c = partition_ids(LABELS, 2, 5, kind=kind, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_iid_partitions_are_balanced_and_dirichlet_is_skewed() -> None:
    iid = LABELS[partition_ids(LABELS, 0, 5, kind="iid", seed=0)].bincount(minlength=10)
    skew = LABELS[partition_ids(LABELS, 0, 5, kind="dirichlet", alpha=0.1, seed=0)].bincount(
        minlength=10)
    assert iid.min() >= 4  # 100 samples of 10 classes, shuffled
    assert (skew < 3).sum() >= 3  # label skew: several classes (almost) absent


def test_partition_id_out_of_range() -> None:
    with pytest.raises(ValueError, match="partition-id 5"):
        partition_ids(LABELS, 5, 5)


def test_client_data_has_local_train_and_test_from_its_partition() -> None:
    data = load_client_data("digits", 28, 1, 5, seed=0, local_test_fraction=0.2)
    ids = partition_ids(load_dataset("digits").train_y, 1, 5, seed=0)
    assert set(data.train_ids.tolist()) | set(data.test_ids.tolist()) == set(ids.tolist())
    assert not set(data.train_ids.tolist()) & set(data.test_ids.tolist())
    assert len(data.test_ids) == int(len(ids) * 0.2)
