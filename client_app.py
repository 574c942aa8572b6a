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
from clients.policy import DpPolicy, PolicyRefused
from clients.ledgers import NodeLedgers
from clients.privacy import released_evaluation
from clients.reply import train_reply
from fedsnn.audit.firewall import guard_node
from fedsnn.core.config import ConfigError
from fedsnn.core.data import DatasetError
from fedsnn.core.defense_config import DefenseConfigError
from fedsnn.core.privacy.ledger import LedgerError
from fedsnn.core.privacy.spikes import SpikeBudgetExhausted
from fedsnn.core.protocol import FIREWALL_HOLD_CODE, firewall_hold_reason
from fedsnn.core.training import evaluate as evaluate_model

SETUP_ERROR_CODE = 1001   # the reply's error code when this node cannot take part (bad data/config)
REFUSED_CODE = 1002       # ... when the round asks for less privacy than the node allows


def create_client_app(overrides: Mapping[str, Any] | None = None) -> ClientApp:
    """The ClientApp; `overrides` replace run-config values (tests use it with run_simulation)."""
    app = ClientApp()

    def error(msg: Message, code: int, problem: Exception) -> Message:
        """An error reply naming the problem in one line (no traceback in the SuperNode's log
        every round; the server records it in results.json)."""
        log(ERROR, "fedsnn node: %s", problem)
        return Message(Error(code=code, reason=f"fedsnn node: {problem}"), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        """The node's ledgers, opened once → encode → train → privatize → firewall → reply →
        ledgers saved."""
        config, sent = msg.content["config"], msg.content["arrays"]
        node_config = context.node_config
        server_round = int(config.get("server-round", 0))
        try:
            partition = int(node_config["partition-id"]) if "partition-id" in node_config else None
            ledgers = NodeLedgers.open(context, config, partition)
            node = NodeSetup.from_context(context, overrides, secret=ledgers.node_secret)
            policy = DpPolicy.from_node_config(node_config)
            role = byzantine_role(node, node_config)
        except (NodeSetupError, DatasetError, ConfigError, ValueError) as problem:
            return error(msg, SETUP_ERROR_CODE, problem)
        try:
            arrays, metrics = train_reply(node, sent, config, ledgers, server_round, role=role,
                                          policy=policy)
        except (PolicyRefused, SpikeBudgetExhausted, LedgerError) as problem:
            return error(msg, REFUSED_CODE, problem)
        except DefenseConfigError as problem:  # the round's defense settings cannot work
            return error(msg, SETUP_ERROR_CODE, problem)
        try:
            arrays, metrics, decision = guard_node(node, sent, arrays, metrics,
                                                   train_config=config, ledgers=ledgers,
                                                   server_round=server_round,
                                                   node_config=node_config)
        except ConfigError as problem:  # a bad firewall-* value in the node config
            return error(msg, SETUP_ERROR_CODE, problem)
        if decision.decision != "off" or decision.would:
            log(WARNING if decision.decision == "held" else INFO, "fedsnn firewall: round %d: %s",
                server_round, decision.log_line())
        ledgers.save(context)  # a hardened release is in the node's ledgers too
        if arrays is None:  # held: only the reason code leaves the node
            return Message(Error(code=FIREWALL_HOLD_CODE,
                                 reason=firewall_hold_reason(decision.reason)), reply_to=msg)
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        """Loss and accuracy of the global model on this node's local test split."""
        try:
            node = NodeSetup.from_context(context, overrides)
        except (NodeSetupError, DatasetError, ConfigError, ValueError) as problem:
            return error(msg, SETUP_ERROR_CODE, problem)
        model = node.model_with(msg.content["arrays"])
        loss, accuracy = evaluate_model(model, node.data.test_x, node.data.test_y)
        metrics = released_evaluation({"eval-loss": loss, "eval-acc": accuracy,
                                       "num-examples": len(node.data.test_x),
                                       "partition-id": node.partition_id},
                                      msg.content.get("config", {}))
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    return app


app = create_client_app()
