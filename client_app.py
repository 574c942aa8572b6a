"""fedsnn ClientApp: trains the global model on this node's partition and evaluates it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from clients.malicious import byzantine_role, malicious_train_reply
from clients.node import NodeSetup, local_train_reply
from clients.privacy import privacy_mod, training_privacy
from fedsnn.training import evaluate as evaluate_model


def create_client_app(overrides: Mapping[str, Any] | None = None) -> ClientApp:
    """The ClientApp; `overrides` replace run-config values (tests use it with run_simulation)."""
    app = ClientApp(mods=[privacy_mod])  # client side of the DP defenses

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        """Local training on this node's partition; reply with the update and metrics."""
        node = NodeSetup.from_context(context, overrides)
        server_round = int(msg.content["config"].get("server-round", 0))
        role = byzantine_role(node, context.node_config)
        if role is not None:  # a Byzantine node: clients/malicious.py
            arrays, metrics = malicious_train_reply(node, role, msg.content["arrays"], server_round)
        else:
            model = node.model_with(msg.content["arrays"],
                                    encoder_seed=node.round_seed(server_round))
            hooks = training_privacy(msg.content["config"], context.state, node.spec)
            arrays, metrics = local_train_reply(node, model, server_round, hooks)
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        """Loss and accuracy of the global model on this node's local test split."""
        node = NodeSetup.from_context(context, overrides)
        model = node.model_with(msg.content["arrays"])
        loss, accuracy = evaluate_model(model, node.data.test_x, node.data.test_y)
        metrics = MetricRecord({"eval-loss": loss, "eval-acc": accuracy,
                                "num-examples": len(node.data.test_x),
                                "partition-id": node.partition_id})
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    return app


app = create_client_app()
