"""A node's own DP floor (issue 27, item 6): a round asking for less gets a refused reply."""

from __future__ import annotations

import math

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict

from client_app import REFUSED_CODE, SETUP_ERROR_CODE, create_client_app
from clients.policy import DpPolicy, PolicyRefused
from clients.ledgers import NodeLedgers
from clients.privacy import plan_round
from fedsnn.core.config import RunConfig
from fedsnn.core.models import build_model, spec_for
from fedsnn.tools.local_grid import server_identity

RUN = RunConfig(model="lenet", image_size=8, batch_size=32)
SPEC = spec_for(RUN, 1, 10, 8)
LOCAL = {"client-dp": 1, "local-dp-clipping-norm": 1.0, "local-dp-noise-multiplier": 2.0,
         "dp-delta": 1e-5, "dp-accountant": "rdp"}
DP_SGD = {"client-dp": 1, "dp-sgd-max-grad-norm": 1.0, "dp-sgd-noise-multiplier": 0.6,
          "dp-sgd-target-epsilon": 0.0, "dp-sgd-total-epochs": 10, "dp-delta": 1e-5,
          "dp-accountant": "rdp"}


def plan(config: dict, policy: DpPolicy, ledgers: NodeLedgers | None = None) -> None:
    plan_round(config, RUN, SPEC, ledgers or NodeLedgers(), public_examples=100, policy=policy)


def test_zero_noise_is_refused_even_without_a_policy() -> None:
    with pytest.raises(PolicyRefused, match="adds no noise"):
        plan(LOCAL | {"local-dp-noise-multiplier": 0.0}, DpPolicy())


@pytest.mark.parametrize("config,policy,reason", [
    (LOCAL, DpPolicy(min_noise_multiplier=4.0), "noise multiplier 2 < this node's "
                                                 "dp-min-noise-multiplier 4"),
    (LOCAL, DpPolicy(max_epsilon_round=0.5), "dp-max-epsilon-round 0.5"),
    (DP_SGD, DpPolicy(max_epsilon_round=1.0), "DP-SGD: this round would spend"),
    ({"client-dp": 0}, DpPolicy(max_epsilon=8.0), "asks for none"),
])
def test_a_round_below_the_nodes_floor_is_refused_with_its_reason(config: dict, policy: DpPolicy,
                                                                   reason: str) -> None:
    with pytest.raises(PolicyRefused, match=reason):
        plan(config, policy)


def test_the_total_budget_refuses_the_round_that_would_exceed_it() -> None:
    ledgers, policy = NodeLedgers(), DpPolicy(max_epsilon=12.0)
    one = plan_round(LOCAL, RUN, SPEC, ledgers, public_examples=100, policy=policy)
    sent = ArrayRecord({"w": Array(np.zeros(3, np.float32))})
    rounds = 0
    with pytest.raises(PolicyRefused, match="dp-max-epsilon 12"):
        while rounds < 50:
            one.release(sent, {}, sent=sent)  # spends one release in `ledgers`
            rounds += 1
            one = plan_round(LOCAL, RUN, SPEC, ledgers, public_examples=100, policy=policy)
    assert 1 <= rounds < 50 and ledgers.ledgers["local-dp"].epsilon(1e-5) <= 12.0


def test_a_policy_within_the_settings_accepts() -> None:
    plan(LOCAL, DpPolicy(min_noise_multiplier=1.0, max_epsilon_round=5.0, max_epsilon=100))


def test_the_policy_comes_from_the_node_config_and_bad_values_are_named() -> None:
    policy = DpPolicy.from_node_config({"dp-min-noise-multiplier": 1.0, "dp-max-epsilon": "8"})
    assert policy == DpPolicy(1.0, math.inf, 8.0) and policy.active
    with pytest.raises(ValueError, match="dp-max-epsilon-round: expected a positive number"):
        DpPolicy.from_node_config({"dp-max-epsilon-round": "lots"})


def train_reply(config: dict, **node_config: float) -> Message:
    """The client app's reply to a train message sent with `config`."""
    run_config = {"model": "lenet", "image-size": 8, "defenses": "local-dp"}
    context = Context(run_id=1, node_id=1, state=RecordDict(), run_config=run_config,
                      node_config={"partition-id": 0, "num-partitions": 2, **node_config})
    sent = ArrayRecord(build_model(SPEC).state_dict())
    with server_identity():
        message = Message(RecordDict({"arrays": sent, "config": ConfigRecord(config)}),
                          dst_node_id=1, message_type="train")
        return create_client_app()(message, context)


def test_the_client_app_answers_a_refused_round_with_a_clear_error() -> None:
    reply = train_reply(LOCAL, **{"dp-min-noise-multiplier": 4.0})
    assert reply.has_error() and reply.error.code == REFUSED_CODE
    assert "dp-min-noise-multiplier 4" in reply.error.reason


@pytest.mark.parametrize("config,reason", [
    ({k: v for k, v in LOCAL.items() if k != "local-dp-clipping-norm"},
     "local DP: the train config has no 'local-dp-clipping-norm'"),
    (DP_SGD | {"dp-sgd-total-epochs": "ten"},
     "DP-SGD: 'dp-sgd-total-epochs': expected an integer, got 'ten'"),
])
def test_a_bad_dp_setting_in_the_train_config_is_an_error_reply_naming_the_key(
        config: dict, reason: str) -> None:
    reply = train_reply(config)
    assert reply.has_error() and reply.error.code == SETUP_ERROR_CODE
    assert reply.error.reason == f"fedsnn node: {reason}"
