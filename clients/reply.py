"""A node's train reply, top to bottom: plan the round's privacy → encode → train → privatize →
reply. The ClientApp and the demo both call `train_reply`; the node's ledgers are opened and saved
by the caller, once per message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flwr.app import ArrayRecord, MetricRecord

from clients.malicious import ByzantineRole, malicious_train_reply
from clients.node import NodeSetup, train, training_batch
from clients.policy import DpPolicy
from clients.ledgers import NodeLedgers
from clients.privacy import plan_round


def train_reply(node: NodeSetup, sent: ArrayRecord, config: Mapping[str, Any],
                ledgers: NodeLedgers, server_round: int, *, role: ByzantineRole | None = None,
                policy: DpPolicy | None = None) -> tuple[ArrayRecord, MetricRecord]:
    """What `node` sends back for a round: its update and metrics as they may leave it.

    Args:
        sent: the global arrays the server sent.
        config: the round's train config (the defenses the server's wrappers asked for).
        ledgers: the node's privacy ledgers (`NodeLedgers.open`); the round's releases are
            recorded in them.
        role: a Byzantine node's role (`clients.malicious`): it crafts its update instead.
        policy: the node's DP floor (`clients.policy`).

    Raises:
        PolicyRefused: the round asks for less privacy than the node's policy allows.
    """
    privacy = plan_round(config, node.config, node.spec, ledgers,
                         public_examples=node.public_examples, policy=policy)
    if role is not None:
        update, metrics = malicious_train_reply(node, role, sent, server_round)
    else:
        model = node.model_with(sent, encoder_seed=node.round_seed(server_round))
        x, y = training_batch(node, server_round, privacy.dp_sgd)
        x = privacy.encode(model, x)                                              # 1. encode
        update, metrics = train(node, model, x, y, server_round, privacy.dp_sgd)  # 2. train
    return privacy.release(update, metrics, sent=sent)                    # 3. privatize, 4. reply
