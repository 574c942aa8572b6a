"""The client's privacy firewall (issue 30): the canary is held, harden ends clean with an ε in
the node's ledger, report changes nothing, and only the decision code leaves the node."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict

from client_app import create_client_app
from clients.node import NodeSetup
from clients.ledgers import STATE_KEY, NodeLedgers
from fedsnn.audit.canary import Reply
from clients.reply import train_reply
from fedsnn.audit.firewall import LEDGER_NAME, FirewallPolicy, Own, audit_own, check
from fedsnn.audit.report import firewall_section
from fedsnn.core.config import ConfigError, RunConfig
from fedsnn.core.data import load_dataset
from fedsnn.core.models import build_model
from fedsnn.core.protocol import (FIREWALL_DECISIONS, FIREWALL_HOLD_CODE, FIREWALL_KEY,
                                  FIREWALL_REASON_KEY, FIREWALL_REASONS, TRAIN_METRICS)
from fedsnn.tools.local_grid import LocalGrid, server_identity
from server_app import run
from strategies.rounds import firewall_counts

# the canary: a FedSGD step on one sample of a small lenet (known to leak: iDLG recovers it)
CANARY = {"model": "lenet", "image-size": 16, "update-mode": "gradient", "batch-size": 1,
          "audit-iterations": 30, "firewall-time-budget-s": 5.0, "max-train-samples": 16}


def train_once(run_config: dict[str, Any], node_config: dict[str, Any] | None = None,
               server_round: int = 1) -> tuple[Message, RecordDict]:
    """One train message through the ClientApp of partition 0 of 2 (no federation): its reply
    and the node's state."""
    config = RunConfig.from_mapping(run_config)
    node = NodeSetup.for_partition(config, 0, 2)
    sent = ArrayRecord(build_model(node.spec, dlg_init=True, seed=0).state_dict())
    grid = LocalGrid([create_client_app(run_config)],
                     [{"partition-id": 0, "num-partitions": 2, **(node_config or {})}], run_config)
    with server_identity():
        message = grid.create_message(
            RecordDict({"arrays": sent, "config": ConfigRecord({"server-round": server_round})}),
            "train", 1, "")
        (reply,) = grid.send_and_receive([message])
    return reply, grid.nodes[1][1].state


def test_the_canary_is_held_and_only_the_reason_code_travels() -> None:
    reply, _ = train_once(CANARY | {"firewall": "enforce", "firewall-action": "hold"})
    assert reply.has_error() and not reply.has_content()
    assert reply.error.code == FIREWALL_HOLD_CODE
    assert reply.error.reason == "firewall: fedsgd-batch-1"


def test_the_node_config_switches_the_firewall_on_whatever_the_run_config_says() -> None:
    reply, _ = train_once(CANARY | {"firewall": "off"}, {"firewall": "enforce"})
    assert reply.has_error() and reply.error.code == FIREWALL_HOLD_CODE
    with pytest.raises(ConfigError, match="firewall-action"):
        FirewallPolicy.from_config(RunConfig(), {"firewall-action": "drop"})


def test_report_changes_nothing_in_the_reply() -> None:
    torch.manual_seed(0)
    off, _ = train_once(CANARY | {"firewall": "off"})
    report, _ = train_once(CANARY | {"firewall": "report"})
    assert not report.has_error()
    assert dict(report.content["metrics"]) == dict(off.content["metrics"])
    for key, array in off.content["arrays"].items():
        assert (report.content["arrays"][key].numpy() == array.numpy()).all()


def test_an_allowed_reply_carries_the_decision_codes_and_nothing_else() -> None:
    off, _ = train_once(CANARY | {"firewall": "off"})
    allowed, _ = train_once(CANARY | {"firewall": "enforce", "firewall-action": "allow"})
    metrics = dict(allowed.content["metrics"])
    assert set(metrics) == set(dict(off.content["metrics"]))  # the codes are in every reply
    assert {k: metrics.pop(k) for k in (FIREWALL_KEY, FIREWALL_REASON_KEY)} == {
        FIREWALL_KEY: FIREWALL_DECISIONS.index("allowed"),
        FIREWALL_REASON_KEY: FIREWALL_REASONS.index("fedsgd-batch-1")}
    assert all(TRAIN_METRICS[key].problem(value) is None for key, value in metrics.items())
    assert set(allowed.content.keys()) == {"arrays", "metrics"}


def test_harden_ends_with_a_reply_the_check_finds_clean_and_an_epsilon_in_the_ledger(
        tmp_path: Path) -> None:
    run_config = CANARY | {"firewall": "enforce", "firewall-action": "harden",
                           "local-dp-noise-multiplier": 1.0, "local-dp-clipping-norm": 0.1}
    ledger = tmp_path / "ledger.json"
    reply, state = train_once(run_config, {"privacy-ledger": str(ledger)})
    assert not reply.has_error()
    metrics = reply.content["metrics"]
    assert metrics[FIREWALL_KEY] == FIREWALL_DECISIONS.index("hardened")
    assert math.isnan(metrics["train-loss"])  # a raw figure does not leave a hardened node
    kept = NodeLedgers.from_json(str(state[STATE_KEY]["ledgers"])).ledgers[LEDGER_NAME]
    assert kept.releases == 1 and 0 < kept.epsilon(1e-5) < math.inf
    on_disk = NodeLedgers.from_json(ledger.read_text()).ledgers[LEDGER_NAME]
    assert on_disk.state_dict() == kept.state_dict()
    # the check, run again on what was sent, finds no leak
    config = RunConfig.from_mapping(run_config)
    node = NodeSetup.for_partition(config, 0, 2)
    sent = build_model(node.spec, dlg_init=True, seed=0).state_dict()
    returned = reply.content["arrays"].to_torch_state_dict()
    own = Own(node.data.train_x, node.data.train_y, node.training_indices(1).tolist())
    again = check(Reply(1, 0, sent, returned, 1), node.spec, own, config=config,
                  policy=FirewallPolicy.from_config(config), noisy=True, full=True)
    assert not again.leaky, again.detail


def test_the_cadence_skips_the_full_check_but_not_the_prechecks() -> None:
    policy = FirewallPolicy(mode="enforce", every=3)
    assert [policy.checks_round(r) for r in range(1, 8)] == [True, False, False, True, False,
                                                            False, True]
    reply, _ = train_once(CANARY | {"firewall": "enforce", "firewall-every": 3}, server_round=2)
    assert reply.error.reason == "firewall: fedsgd-batch-1"  # the pre-check runs every round


def test_the_server_counts_decisions_from_the_codes_alone() -> None:
    held, _ = train_once(CANARY | {"firewall": "enforce"})
    allowed, _ = train_once(CANARY | {"firewall": "enforce", "firewall-action": "allow"})
    off, _ = train_once(CANARY)
    assert firewall_counts([held, allowed, off]) == {"off": 1, "allowed": 1, "hardened": 0,
                                                     "held": 1}


def test_the_report_shows_per_round_decisions_beside_the_audit_on_what_was_sent() -> None:
    results = {"rounds": [{"round": 1, "participation": {"firewall": {
        "off": 0, "allowed": 1, "hardened": 1, "held": 2}}}]}
    audit = {"attacks": [{"round": 1, "partition-id": 0, "verdict": {"outcome": "leak"}},
                         {"round": 1, "partition-id": 1,
                          "verdict": {"outcome": "no evidence beyond chance"}},
                         {"round": 1, "canary": True, "verdict": {"outcome": "leak"}}]}
    lines = firewall_section(audit, results)
    assert "| 1 | 1 | 1 | 2 | 0 | 1 leak, 1 no evidence beyond chance |" in lines
    assert firewall_section(audit, {"rounds": [{"round": 1, "participation": {
        "firewall": {"off": 2, "allowed": 0, "hardened": 0, "held": 0}}}]}) == []


@pytest.mark.slow
def test_a_federation_with_a_firewalled_canary_node(tmp_path: Path) -> None:
    """Node 1 holds every round (node config), node 2 has no firewall; results.json and the
    report count them."""
    run_config = CANARY | {"num-server-rounds": 2, "output-dir": str(tmp_path),
                           "min-available-nodes": 2, "audit-rounds": "all"}
    grid = LocalGrid([create_client_app(run_config)] * 2,
                     [{"partition-id": 0, "num-partitions": 2, "firewall": "enforce"},
                      {"partition-id": 1, "num-partitions": 2}], run_config)
    config = RunConfig.from_mapping(run_config)
    with server_identity():
        run(grid, config, load_dataset(config.dataset, config.image_size))
    (results_path,) = tmp_path.glob("*/results.json")
    results = json.loads(results_path.read_text())
    firewall = [r["participation"]["firewall"] for r in results["rounds"] if "participation" in r]
    assert firewall == [{"off": 1, "allowed": 0, "hardened": 0, "held": 1}] * 2
    assert "## The clients' firewalls" in (results_path.parent / "report.md").read_text()


@pytest.mark.parametrize(("model", "reason"), [("lenet", "label-from-bias"),
                                               ("lenet-snn", "spike-rate-map")])
def test_prechecks_find_exact_give_aways_in_a_fedsgd_batch_of_two(model: str, reason: str
                                                                   ) -> None:
    reply, _ = train_once(CANARY | {"model": model, "batch-size": 2, "firewall": "enforce"})
    assert reply.error.reason == f"firewall: {reason}"


def test_a_fedavg_reply_gets_the_full_check_on_its_cadence_only() -> None:
    honest = CANARY | {"update-mode": "fedavg", "batch-size": 8, "local-epochs": 1,
                       "firewall": "enforce", "firewall-action": "allow", "firewall-every": 2,
                       "firewall-time-budget-s": 1.0}
    checked, _ = train_once(honest, server_round=1)
    skipped, _ = train_once(honest, server_round=2)
    reasons = [FIREWALL_REASONS[r.content["metrics"][FIREWALL_REASON_KEY]]
               for r in (checked, skipped)]
    assert reasons[0] in ("no-evidence", "inconclusive", "leak") and reasons[1] == "not-checked"


def test_the_full_check_alone_finds_the_spiking_canary_leaky_with_the_rate_decoder() -> None:
    """Without the pre-checks: the audit, on the node's own reply and images, says "leak"."""
    config = RunConfig.from_mapping(CANARY | {"model": "lenet-snn", "batch-size": 4,
                                              "image-size": 28, "max-train-samples": 0,
                                              "firewall": "enforce"})
    node = NodeSetup.for_partition(config, 0, 2)
    sent = ArrayRecord(build_model(node.spec, dlg_init=True, seed=0).state_dict())
    returned, metrics = train_reply(node, sent, ConfigRecord({"server-round": 1}), RecordDict(), 1)
    data = load_dataset(config.dataset, config.image_size)
    own = Own(node.data.train_x, node.data.train_y, node.training_indices(1).tolist(),
              data.test_x.float(), data.test_y.long(), data.native_size)
    reply = Reply(1, 0, sent.to_torch_state_dict(), returned.to_torch_state_dict(),
                  int(metrics["num-examples"]))
    found = audit_own(reply, node.spec, own, config=config,
                      policy=FirewallPolicy.from_config(config))
    assert found.reason == "leak" and found.detail.startswith("rate-decoder: **leak**"), found
