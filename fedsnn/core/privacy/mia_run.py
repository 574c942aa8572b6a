"""The membership-inference audit of a finished run's global model (`fedsnn mia RUN_DIR`).

Members are the samples some client trained on (every partition's local train split); non-members
are the dataset's test split plus every client's held-out local test split, which no client
trained on. The partitioning is re-made from the run's config, as the clients made it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from fedsnn.core.config import RunConfig
from fedsnn.core.data import load_client_data, load_dataset
from fedsnn.core.models import ModelSpec, build_model
from fedsnn.core.privacy.mia import MiaResult, audit_membership
from fedsnn.core.results import write_json_atomic


def _num_partitions(results: dict[str, Any]) -> int:
    """The number of clients, from round 1's participation (all nodes sampled)."""
    for entry in results.get("rounds", []):
        sampled = entry.get("participation", {}).get("sampled")
        if sampled:
            return int(sampled)
    raise ValueError("cannot tell how many clients the run had; pass --num-partitions")


def membership_sets(config: RunConfig, num_partitions: int
                    ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(members, non-members) as (x, y) pairs for a run with `num_partitions` clients."""
    data = load_dataset(config.dataset, config.image_size)
    member_ids, held_out_ids = [], []
    for partition in range(num_partitions):
        client = load_client_data(config.dataset, config.image_size, partition, num_partitions,
                                  kind=config.partitioner, alpha=config.dirichlet_alpha,
                                  seed=config.seed, local_test_fraction=config.local_test_fraction)
        member_ids.append(client.train_ids)
        held_out_ids.append(client.test_ids)
    members = torch.cat(member_ids)
    held_out = torch.cat(held_out_ids)
    nonmembers_x = torch.cat([data.test_x, data.train_x[held_out]])
    nonmembers_y = torch.cat([data.test_y, data.train_y[held_out]])
    return (data.train_x[members], data.train_y[members]), (nonmembers_x, nonmembers_y)


def audit_run(run_dir: Path, *, num_partitions: int = 0, score: str = "loss",
              seed: int = 0) -> MiaResult:
    """Audit `run_dir/model.pt` and write `run_dir/mia.json`.

    Example:
        >>> audit_run(Path("fedsnn-runs/20260101-000000-lenet"))  # doctest: +SKIP
    """
    results = json.loads((run_dir / "results.json").read_text())
    config = RunConfig.from_mapping(results["config"])
    model = build_model(ModelSpec(**results["model-spec"]))
    state = torch.load(run_dir / "model.pt")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    members, nonmembers = membership_sets(config, num_partitions or _num_partitions(results))
    result = audit_membership(model, members, nonmembers, score=score, seed=seed)
    write_json_atomic(run_dir / "mia.json", result.to_dict())
    return result
