"""fedsnn ClientApp: trains the global model on this node's partition and evaluates it."""

from __future__ import annotations

from collections.abc import Mapping
from logging import ERROR, INFO, WARNING
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.logger import log

from clients.malicious import byzantine_role
from clients.node import NodeSetup, NodeSetupError
from clients.privacy import (LEDGER_KEY, released_evaluation, restore_node_ledger,
                             save_node_ledger)
from clients.reply import train_reply
from fedsnn.audit.firewall import guard_node
from fedsnn.core.config import ConfigError
from fedsnn.core.data import DatasetError
from fedsnn.core.protocol import FIREWALL_HOLD_CODE, firewall_hold_reason
from fedsnn.core.training import evaluate as evaluate_model

SETUP_ERROR_CODE = 1001  # the reply's error code when this node cannot take part (bad data/config)


def create_client_app(overrides: Mapping[str, Any] | None = None) -> ClientApp:
    """The ClientApp; `overrides` replace run-config values (tests use it with run_simulation)."""
    app = ClientApp()

    def setup_or_error(msg: Message, context: Context) -> NodeSetup | Message:
        """This node's setup, or an error reply naming the problem in one line (no traceback
        in the SuperNode's log every round; the server records it in results.json)."""
        try:
            # first: a secret client seed is kept in the ledger too
            restore_node_ledger(context.state, context.node_config.get(LEDGER_KEY))
            return NodeSetup.from_context(context, overrides)
        except (NodeSetupError, DatasetError, ConfigError, ValueError) as error:
            log(ERROR, "fedsnn node: %s", error)
            return Message(Error(code=SETUP_ERROR_CODE, reason=f"fedsnn node: {error}"),
                           reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        """encode → train (plain or DP-SGD) → privatize the update → firewall → reply."""
        node = setup_or_error(msg, context)
        if isinstance(node, Message):
            return node
        config, sent = msg.content["config"], msg.content["arrays"]
        server_round = int(config.get("server-round", 0))
        arrays, metrics = train_reply(node, sent, config, context.state, server_round,
                                      role=byzantine_role(node, context.node_config),
                                      ledger=context.node_config.get(LEDGER_KEY))
        try:
            arrays, metrics, decision = guard_node(node, sent, arrays, metrics,
                                                   train_config=config, state=context.state,
                                                   server_round=server_round,
                                                   node_config=context.node_config)
        except ConfigError as error:  # a bad firewall-* value in the node config
            log(ERROR, "fedsnn node: %s", error)
            return Message(Error(code=SETUP_ERROR_CODE, reason=f"fedsnn node: {error}"),
                           reply_to=msg)
        if decision.decision != "off" or decision.would:
            log(WARNING if decision.decision == "held" else INFO, "fedsnn firewall: round %d: %s",
                server_round, decision.log_line())
        if decision.noise_multiplier is not None:  # a hardened release is in the node's ledger
            save_node_ledger(context.state, context.node_config.get(LEDGER_KEY))
        if arrays is None:  # held: only the reason code leaves the node
            return Message(Error(code=FIREWALL_HOLD_CODE,
                                 reason=firewall_hold_reason(decision.reason)), reply_to=msg)
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        """Loss and accuracy of the global model on this node's local test split."""
        node = setup_or_error(msg, context)
        if isinstance(node, Message):
            return node
        model = node.model_with(msg.content["arrays"])
        loss, accuracy = evaluate_model(model, node.data.test_x, node.data.test_y)
        metrics = released_evaluation({"eval-loss": loss, "eval-acc": accuracy,
                                       "num-examples": len(node.data.test_x),
                                       "partition-id": node.partition_id},
                                      msg.content.get("config", {}))
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    return app


app = create_client_app()
