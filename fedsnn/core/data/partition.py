"""Split a dataset's train split across clients with Flower Datasets' partitioners.

Partitioners work on a small index table (sample id + label), so every source (embedded,
local files, Hugging Face) is partitioned by the same code, deterministically for a seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import torch
from datasets import Dataset
from flwr_datasets.partitioner import DirichletPartitioner, IidPartitioner, Partitioner

from fedsnn.core.data.sources import ImageData, load_dataset


@dataclass(frozen=True)
class ClientData:
    """One client's data: ids (indices into the dataset's train split) and tensors.

    `shared_ids` is False for a node's own data (`load_local_data`): its ids index the node's
    file, which the server cannot look up, so the node does not report them.
    """

    train_ids: torch.Tensor
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_ids: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    shared_ids: bool = True


def make_partitioner(kind: str, num_partitions: int, *, alpha: float = 0.5,
                     seed: int = 0) -> Partitioner:
    """An IID or Dirichlet (label-skew, concentration `alpha`) partitioner."""
    if kind == "iid":
        return IidPartitioner(num_partitions=num_partitions)
    if kind == "dirichlet":
        return DirichletPartitioner(num_partitions=num_partitions, partition_by="label",
                                    alpha=alpha, seed=seed, min_partition_size=0,
                                    self_balancing=True)
    raise ValueError(f"Unknown partitioner {kind!r}; expected one of ['dirichlet', 'iid']")


def partition_ids(labels: torch.Tensor, partition_id: int, num_partitions: int, *,
                  kind: str = "iid", alpha: float = 0.5, seed: int = 0) -> torch.Tensor:
    """The train-split ids that belong to `partition_id` (sorted)."""
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition-id {partition_id} is outside [0, {num_partitions})")
    partitioner = _partitioner_over(labels, num_partitions, kind, alpha, seed)
    ids = partitioner.load_partition(partition_id)["id"]
    return torch.tensor(sorted(ids), dtype=torch.long)


def local_split_sizes(labels: torch.Tensor, num_partitions: int, *, kind: str = "iid",
                      alpha: float = 0.5, seed: int = 0, local_test_fraction: float = 0.2
                      ) -> list[tuple[int, int]]:
    """(local train, local test) sizes of every partition, as `load_client_data` splits them.

    Example:
        >>> local_split_sizes(torch.zeros(100, dtype=torch.long), 4)
        [(20, 5), (20, 5), (20, 5), (20, 5)]
    """
    partitioner = _partitioner_over(labels, num_partitions, kind, alpha, seed)
    sizes = [partitioner.load_partition(i).num_rows for i in range(num_partitions)]
    return [(size - int(size * local_test_fraction), int(size * local_test_fraction))
            for size in sizes]


def _partitioner_over(labels: torch.Tensor, num_partitions: int, kind: str, alpha: float,
                      seed: int) -> Partitioner:
    table = Dataset.from_dict({"id": list(range(len(labels))), "label": labels.tolist()})
    # IidPartitioner shards contiguously: shuffle first, with the run's seed.
    partitioner = make_partitioner(kind, num_partitions, alpha=alpha, seed=seed)
    partitioner.dataset = table.shuffle(seed=seed) if kind == "iid" else table
    return partitioner


@lru_cache(maxsize=8)
def load_client_data(dataset: str, image_size: int, partition_id: int, num_partitions: int, *,
                     kind: str = "iid", alpha: float = 0.5, seed: int = 0,
                     local_test_fraction: float = 0.2) -> ClientData:
    """A client's partition, split into local train and local test by a seeded permutation."""
    data: ImageData = load_dataset(dataset, image_size)
    ids = partition_ids(data.train_y, partition_id, num_partitions, kind=kind, alpha=alpha,
                        seed=seed)
    return _split_locally(data, ids, seed + partition_id, local_test_fraction)


@lru_cache(maxsize=2)
def load_local_data(spec: str, image_size: int, *, seed: int = 0,
                    local_test_fraction: float = 0.2) -> ClientData:
    """A node's own dataset (node config `data-path`): every sample of its train split, divided
    into local train and local test like a partition.

    Example:
        >>> load_local_data("npz:/data/node3.npz", 28).train_x.shape  # doctest: +SKIP
        torch.Size([480, 1, 28, 28])
    """
    data = load_dataset(spec, image_size)
    ids = torch.arange(len(data.train_y))
    return dataclasses.replace(_split_locally(data, ids, seed, local_test_fraction),
                               shared_ids=False)


def _split_locally(data: ImageData, ids: torch.Tensor, seed: int, local_test_fraction: float
                   ) -> ClientData:
    """Split `ids` (of `data`'s train split) into local train and test by a seeded permutation."""
    order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(ids) * local_test_fraction)
    test_ids, train_ids = ids[order[:n_test]].sort().values, ids[order[n_test:]].sort().values
    return ClientData(train_ids, data.train_x[train_ids], data.train_y[train_ids],
                      test_ids, data.train_x[test_ids], data.train_y[test_ids])
