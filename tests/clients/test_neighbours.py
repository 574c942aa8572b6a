"""A DP-protected reply does not give an add/remove neighbour away (issue 27, item 1): its counts
are public figures from the node's n̂ and DP-SGD's rate and steps do not depend on the data's
size, so a node with one sample more or less sends the same metrics; only the noised update
differs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from flwr.app import ArrayRecord

from clients.node import NodeSetup
from clients.ledgers import NodeLedgers
from clients.reply import train_reply
from fedsnn.core.config import RunConfig
from fedsnn.core.models import build_model
from fedsnn.tools.demo.engine import client_train_config

DEFENSES = {"local-dp": {}, "dp-sgd": {"dp-sgd-target-epsilon": 8.0}, "spike-dp": {},
            "dp-sgd,local-dp": {}}


def neighbours(node: NodeSetup) -> dict[str, NodeSetup]:
    """The node, and the node with its last sample removed / a test sample added (n̂ stays)."""
    data = node.data

    def with_data(ids: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> NodeSetup:
        return dataclasses.replace(node, data=dataclasses.replace(
            data, train_ids=ids, train_x=x, train_y=y))

    return {"same": node,
            "removed": with_data(data.train_ids[:-1], data.train_x[:-1], data.train_y[:-1]),
            "added": with_data(torch.cat([data.train_ids, data.test_ids[:1]]),
                               torch.cat([data.train_x, data.test_x[:1]]),
                               torch.cat([data.train_y, data.test_y[:1]]))}


@pytest.mark.parametrize("update_mode", ["fedavg", "gradient"])
@pytest.mark.parametrize("defense", sorted(DEFENSES))
def test_protected_metrics_do_not_change_when_one_sample_is_added_or_removed(
        defense: str, update_mode: str) -> None:
    config = RunConfig.from_mapping({"model": "lenet", "image-size": 8, "batch-size": 32,
                                     "local-epochs": 2, "update-mode": update_mode,
                                     "max-train-samples": 100, "defenses": defense,
                                     **DEFENSES[defense]})
    node = NodeSetup.for_partition(config, 0, 2)
    sent = {k: v.clone() for k, v in build_model(node.spec, seed=0).state_dict().items()}
    round_config = client_train_config(config, sent)
    replies, ledgers = {}, {}
    for name, setup in neighbours(node).items():
        ledgers[name] = NodeLedgers()
        _, metrics = train_reply(setup, ArrayRecord(sent), round_config, ledgers[name], 1)
        replies[name] = dict(metrics)
    assert len(node.data.train_x) == node.public_examples == 100
    assert replies["removed"] == replies["same"] == replies["added"], replies
    expected_steps = 2 * 4 if update_mode == "fedavg" else 1   # E · ⌈100 / 32⌉
    assert replies["same"]["local-steps"] == expected_steps
    if "dp-sgd" in defense:  # the mechanism itself, not only what the reply says
        histories = {name: ledger.ledgers["dp-sgd"].state_dict()["history"]
                     for name, ledger in ledgers.items()}
        assert histories["removed"] == histories["same"] == histories["added"]
        ((sigma, rate, steps),) = histories["same"]
        assert rate == pytest.approx(1 / 4) and steps == expected_steps
