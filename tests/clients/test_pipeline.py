"""One client pipeline (issue 25, item 2): the ClientApp opens the node's ledgers once per train
message and enters the privacy code once (`plan_round`); the plan's steps run in order."""

from __future__ import annotations

import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict

import clients.ledgers
import clients.privacy
import clients.reply
from client_app import create_client_app
from clients.node import NodeSetup
from fedsnn.core.models import build_model
from fedsnn.tools.local_grid import server_identity


def test_a_train_message_opens_the_ledgers_once_and_plans_privacy_once(monkeypatch) -> None:
    calls: dict[str, int] = {"open": 0, "plan": 0}
    real_open, real_plan = clients.ledgers.NodeLedgers.open.__func__, clients.reply.plan_round

    def opened(cls, *args, **kwargs):
        calls["open"] += 1
        return real_open(cls, *args, **kwargs)

    def planned(*args, **kwargs):
        calls["plan"] += 1
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(clients.ledgers.NodeLedgers, "open", classmethod(opened))
    monkeypatch.setattr(clients.reply, "plan_round", planned)
    run_config = {"model": "lenet", "image-size": 8, "max-train-samples": 40}
    context = Context(run_id=1, node_id=1, state=RecordDict(), run_config=run_config,
                      node_config={"partition-id": 0, "num-partitions": 2})
    config = {"client-dp": 1, "local-dp-clipping-norm": 1.0, "local-dp-noise-multiplier": 2.0,
              "dp-delta": 1e-5, "dp-accountant": "rdp", "server-round": 1}
    app = create_client_app()
    with server_identity():
        spec = NodeSetup.from_context(context).spec
        sent = ArrayRecord(build_model(spec).state_dict())
        for server_round in (1, 2):
            message = Message(RecordDict({"arrays": sent, "config": ConfigRecord(
                config | {"server-round": server_round})}), dst_node_id=1, message_type="train")
            reply = app(message, context)
            assert not reply.has_error()
    assert calls == {"open": 2, "plan": 2}
    assert reply.content["metrics"]["local-dp-client-epsilon"] == pytest.approx(
        clients.privacy.gaussian_epsilon(noise_multiplier=1.0, releases=2, delta=1e-5))
