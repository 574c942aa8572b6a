"""fedsnn ClientApp: trains the global model on this node's partition and evaluates it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp

from clients.malicious import byzantine_role
from clients.node import NodeSetup
from clients.privacy import released_evaluation, restore_node_ledger, save_node_ledger
from clients.reply import train_reply
from fedsnn.training import evaluate as evaluate_model


def create_client_app(overrides: Mapping[str, Any] | None = None) -> ClientApp:
    """The ClientApp; `overrides` replace run-config values (tests use it with run_simulation)."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        """encode → train (plain or DP-SGD) → privatize the update → reply."""
        restore_node_ledger(context)  # node config privacy-ledger: ε survives restarts
        node = NodeSetup.from_context(context, overrides)  # (after: a secret seed is in the ledger)
        config, sent = msg.content["config"], msg.content["arrays"]
        server_round = int(config.get("server-round", 0))
        arrays, metrics = train_reply(node, sent, config, context.state, server_round,
                                      role=byzantine_role(node, context.node_config))
        save_node_ledger(context)
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        """Loss and accuracy of the global model on this node's local test split."""
        node = NodeSetup.from_context(context, overrides)
        model = node.model_with(msg.content["arrays"])
        loss, accuracy = evaluate_model(model, node.data.test_x, node.data.test_y)
        metrics = released_evaluation({"eval-loss": loss, "eval-acc": accuracy,
                                       "num-examples": len(node.data.test_x),
                                       "partition-id": node.partition_id},
                                      msg.content.get("config", {}))
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    return app


app = create_client_app()
