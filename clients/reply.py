"""A node's train reply, top to bottom: encode → train (plain or DP-SGD) → privatize the update →
reply. The ClientApp and the demo both call `train_reply`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flwr.app import ArrayRecord, MetricRecord, RecordDict

from clients.malicious import ByzantineRole, malicious_train_reply
from clients.node import NodeSetup, local_train_reply
from clients.privacy import node_state, release, restore_node_ledger, save_node_ledger


def train_reply(node: NodeSetup, sent: ArrayRecord, config: Mapping[str, Any], state: RecordDict,
                server_round: int, role: ByzantineRole | None = None, ledger: str | None = None
                ) -> tuple[ArrayRecord, MetricRecord]:
    """What `node` sends back for a round: its update and metrics as they may leave it.

    Args:
        sent: the global arrays the server sent.
        config: the round's train config (the defenses the server's wrappers asked for).
        state: the node's `Context.state` (its privacy ledgers persist there).
        role: a Byzantine node's role (`clients.malicious`): it crafts its update instead.
        ledger: the node's `privacy-ledger` file (node config): its privacy state is read from
            it first and written back after the release, so ε survives restarts.
    """
    restore_node_ledger(state, ledger)
    if role is not None:
        update, metrics = malicious_train_reply(node, role, sent, server_round)
    else:
        model = node.model_with(sent, encoder_seed=node.round_seed(server_round))
        update, metrics = local_train_reply(node, model, server_round, config, state)  # 1, 2
    reply = release(update, metrics, sent=sent, config=config, state=node_state(state))  # 3, 4
    save_node_ledger(state, ledger)
    return reply
