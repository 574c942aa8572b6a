"""Nothing leaves a DP-protected client outside its ε, and no reply carries ground truth: the
auditor recomputes which samples a client trained on (`fedsnn.audit.ground_truth`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from flwr.app import Message
from flwr.supercore.differential_privacy import KEY_NORM_BIT

from client_app import create_client_app
from clients.node import NodeSetup, train, training_batch
from fedsnn.audit.ground_truth import simulated_ground_truth
from fedsnn.core.config import RunConfig
from fedsnn.core.data import load_dataset
from fedsnn.core.models import build_model
from fedsnn.core.protocol import PROTECTED_REPLY_KEYS
from fedsnn.core.training import batch_gradient
from fedsnn.tools.local_grid import LocalGrid, server_identity
from server_app import run

SMALL = {"model": "lenet", "image-size": 16, "local-epochs": 1, "num-server-rounds": 1,
         "batch-size": 8, "audit-enabled": False}
CLIENT_DEFENSES = {
    "local-dp": {"defenses": "local-dp"},
    "dp-sgd": {"defenses": "dp-sgd"},
    "spike-dp": {"defenses": "spike-dp"},
    "all": {"defenses": "central-dp,local-dp,dp-sgd,spike-dp",
            "central-dp-clipping": "client-adaptive"},
}


def replies_of(tmp_path: Path, overrides: dict[str, Any], nodes: int = 2
               ) -> tuple[list[Message], Path]:
    """Every train and evaluate reply of a one-round in-process run, and its run folder."""
    run_config = SMALL | {"output-dir": str(tmp_path)} | overrides
    grid = LocalGrid.partitioned([create_client_app(run_config)] * nodes, run_config)
    seen: list[Message] = []
    grid.after_reply = lambda message, reply: seen.append(reply)
    config = RunConfig.from_mapping(run_config)
    with server_identity():
        run(grid, config, load_dataset(config.dataset, config.image_size))
    (results,) = tmp_path.glob("*/results.json")
    return seen, results.parent


def metric_keys(reply: Message) -> set[str]:
    return {key for record in reply.content.metric_records.values() for key in record}


def test_the_allow_list_names_flowers_norm_bit() -> None:
    assert KEY_NORM_BIT in PROTECTED_REPLY_KEYS


@pytest.mark.parametrize("update_mode", ["fedavg", "gradient"])
@pytest.mark.parametrize("defense", sorted(CLIENT_DEFENSES))
def test_every_metric_of_a_protected_reply_is_on_the_allow_list(tmp_path: Path, defense: str,
                                                                update_mode: str) -> None:
    replies, _ = replies_of(tmp_path, CLIENT_DEFENSES[defense] | {"update-mode": update_mode})
    kinds = {reply.metadata.message_type for reply in replies}
    assert kinds == {"train", "evaluate"} and not any(reply.has_error() for reply in replies)
    for reply in replies:
        keys = metric_keys(reply)
        assert keys <= PROTECTED_REPLY_KEYS, (defense, reply.metadata.message_type,
                                              keys - PROTECTED_REPLY_KEYS)
        assert "num-examples" in keys  # what Flower's aggregation needs is still there
    train = [metric_keys(r) for r in replies if r.metadata.message_type == "train"]
    assert all(any(key.endswith("epsilon") for key in keys) for keys in train)


def test_an_unprotected_reply_keeps_its_metrics_but_carries_no_sample_ids(tmp_path: Path) -> None:
    replies, _ = replies_of(tmp_path, {"update-mode": "gradient"})
    train = [metric_keys(r) for r in replies if r.metadata.message_type == "train"]
    assert train and all("train-loss" in keys and "sample-ids" not in keys for keys in train)


def test_the_recomputed_ground_truth_is_the_batch_the_client_trained_on() -> None:
    config = RunConfig(update_mode="gradient", batch_size=3, image_size=16, learning_rate=0.5)
    data = load_dataset(config.dataset, config.image_size)
    truth = simulated_ground_truth(config, num_partitions=4)
    node = NodeSetup.for_partition(config, 2, 4)
    model = build_model(node.spec, seed=0, dlg_init=True)
    sent = {k: v.clone() for k, v in model.state_dict().items()}
    arrays, _ = train(node, model, *training_batch(node, 5), 5)
    returned = arrays.to_torch_state_dict()
    ids = truth(5, 2)
    assert len(ids) == 3 and truth(6, 2) != ids  # a fresh batch every round
    model.load_state_dict(sent)
    _, expected = batch_gradient(model, data.train_x[ids], data.train_y[ids])
    for name, gradient in expected.items():  # the reply is w - lr * g of exactly those samples
        recovered = (sent[name].double() - returned[name].double()) / config.learning_rate
        assert torch.allclose(recovered.float(), gradient, atol=1e-5), name
    assert truth(5, 7) is None  # not a partition of this run: nothing to score against


@pytest.mark.slow
def test_the_in_line_audit_scores_against_the_recomputed_ground_truth(tmp_path: Path) -> None:
    _, run_dir = replies_of(tmp_path, {"update-mode": "gradient", "batch-size": 1,
                                       "learning-rate": 0.01, "audit-enabled": True,
                                       "audit-iterations": 3, "audit-workers": 0})
    rows = json.loads((run_dir / "audit.json").read_text())["attacks"]
    assert len(rows) == 2 and all(row["psnr"] is not None for row in rows), rows
    truth = simulated_ground_truth(RunConfig.from_mapping(SMALL | {"update-mode": "gradient",
                                                                   "batch-size": 1}), 2)
    data = load_dataset("digits", 16)
    for row in rows:
        assert row["true-labels"] == data.train_y[truth(1, row["partition-id"])].tolist()
