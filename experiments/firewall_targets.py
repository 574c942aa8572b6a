"""Issue 30's targets for the client's privacy firewall, measured small and in process.

For each scenario, every node of a `nodes`-partition split trains round after round on the same
global model a seeded LeNet (no aggregation between rounds: each round is a fresh draw of the
node's batch, so the rounds are independent trials), and its reply goes through the firewall
(`fedsnn.audit.firewall.guard_node`, the ClientApp's own step). Reported per scenario: how many
rounds were allowed / hardened / held, the client's time per round without and with the
firewall (their ratio: the overhead at the policy's cadence), the mean cost of one full check,
and, on every reply that was sent, the verdict of the server's in-line audit (`audit_reply`
with the run's audit plan and the simulation's ground truth, over the whole train split).

    python -m experiments.firewall_targets --rounds 10 --nodes 2
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord

from clients.ledgers import NodeLedgers
from clients.node import NodeSetup
from clients.reply import train_reply
from fedsnn.audit.auditor import Auditor
from fedsnn.audit.canary import Reply
from fedsnn.audit.firewall import guard_node
from fedsnn.audit.ground_truth import simulated_ground_truth
from fedsnn.audit.plan import AuditPlan
from fedsnn.audit.reply import NotAttacked, audit_reply
from fedsnn.core.config import RunConfig
from fedsnn.core.data import load_dataset
from fedsnn.core.models import build_model

SCENARIOS: dict[str, dict[str, Any]] = {
    # known-leaky canaries: FedSGD on one sample
    "canary-lenet-hold": {"model": "lenet", "update-mode": "gradient", "batch-size": 1,
                          "firewall": "enforce", "firewall-action": "hold"},
    "canary-lenet-harden": {"model": "lenet", "update-mode": "gradient", "batch-size": 1,
                            "firewall": "enforce", "firewall-action": "harden",
                            "local-dp-clipping-norm": 0.1},
    # a spiking FedSGD batch of 4, the server granted public data and runs the rate decoder
    "canary-snn-public-hold": {"model": "lenet-snn", "update-mode": "gradient", "batch-size": 4,
                               "audit-public-data": "test-split",
                               "audit-attack": "rate-decoder", "firewall": "enforce",
                               "firewall-action": "hold"},
    "canary-snn-public-harden": {"model": "lenet-snn", "update-mode": "gradient",
                                 "batch-size": 4, "audit-public-data": "test-split",
                                 "audit-attack": "rate-decoder",
                                 "firewall": "enforce", "firewall-action": "harden",
                                 "local-dp-clipping-norm": 0.1},
    # honest clients in the README's default setting (lenet, FedAvg, 2 epochs, batch 16, 5 nodes)
    "honest-readme": {"firewall": "enforce", "firewall-action": "hold"},
    # ... and with 32 images each, where the unrolled attack has a chance in its budget
    "honest-small": {"firewall": "enforce", "firewall-action": "hold", "max-train-samples": 32},
}


def run_scenario(name: str, overrides: dict[str, Any], *, rounds: int, nodes: int,
                 every: int | None, budget: float | None = None, server_audit: bool = True
                 ) -> dict[str, Any]:
    """Decisions, timings and the server's verdicts of one scenario."""
    settings = {**overrides, **({"firewall-every": every} if every else {}),
                **({"firewall-time-budget-s": budget} if budget else {})}
    config = RunConfig.from_mapping(settings)
    off = RunConfig.from_mapping({**settings, "firewall": "off"})
    data = load_dataset(config.dataset, config.image_size)
    plan = AuditPlan.from_config(config)
    auditor = Auditor(data.train_x, data.train_y,
                      ground_truth=simulated_ground_truth(config, nodes),
                      public_x=data.test_x, public_y=data.test_y, native_size=data.native_size)
    counts = {"allowed": 0, "hardened": 0, "held": 0}
    reasons: dict[str, int] = {}
    server: dict[str, int] = {}
    plain_s = guarded_s = 0.0
    checks: list[float] = []
    hardened: list[float] = []
    epsilon = 0.0
    for partition in range(nodes):
        node = NodeSetup.for_partition(config, partition, nodes)
        plain_node = NodeSetup.for_partition(off, partition, nodes)
        sent = ArrayRecord(build_model(node.spec, dlg_init=True, seed=0).state_dict())
        ledgers = NodeLedgers()
        for server_round in range(1, rounds + 1):
            train_config = ConfigRecord({"server-round": server_round})
            started = time.perf_counter()
            train_reply(plain_node, sent, train_config, NodeLedgers(), server_round)
            plain_s += time.perf_counter() - started
            started = time.perf_counter()
            returned, metrics = train_reply(node, sent, train_config, ledgers, server_round)
            arrays, _, decision = guard_node(node, sent, returned, metrics,
                                             train_config=train_config, ledgers=ledgers,
                                             server_round=server_round)
            guarded_s += time.perf_counter() - started
            counts[decision.decision] += 1
            reasons[decision.reason] = reasons.get(decision.reason, 0) + 1
            if decision.reason in ("leak", "no-evidence", "inconclusive", "not-attacked"):
                checks.append(decision.seconds)
            if decision.noise_multiplier is not None:
                hardened.append(decision.noise_multiplier)
                epsilon = max(epsilon, decision.epsilon or 0.0)
            if arrays is not None and server_audit:
                verdict = server_verdict(config, node, plan, auditor, sent, arrays, metrics,
                                         server_round)
                server[verdict] = server.get(verdict, 0) + 1
    total = rounds * nodes
    return {"scenario": name, "settings": settings, "rounds": total, **counts,
            "held-or-hardened": (counts["held"] + counts["hardened"]) / total,
            "reasons": reasons, "server-audit-on-sent": server,
            "harden-z": dict(sorted(Counter(hardened).items())),
            "largest-node-firewall-epsilon": round(epsilon, 1),
            "client-s-per-round": round(plain_s / total, 3),
            "client-s-per-round-firewall": round(guarded_s / total, 3),
            "overhead": round(guarded_s / plain_s, 2),
            "full-checks": len(checks),
            "s-per-full-check": round(sum(checks) / len(checks), 2) if checks else None}


def server_verdict(config: RunConfig, node: NodeSetup, plan: AuditPlan, auditor: Auditor,
                   sent: ArrayRecord, arrays: ArrayRecord, metrics: Any, server_round: int) -> str:
    """The server's in-line audit on a reply the firewall let through."""
    reply = Reply(server_round, node.partition_id, sent.to_torch_state_dict(),
                  arrays.to_torch_state_dict(), int(metrics["num-examples"]),
                  int(metrics.get("local-steps", 1)))
    try:
        audited = audit_reply(reply, plan=plan, config=config, spec=node.spec, auditor=auditor,
                              public=plan.public(load_dataset(config.dataset, config.image_size)))
    except NotAttacked:
        return "not attacked"
    return "unscored" if audited.verdict is None else audited.verdict.outcome.value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--every", type=int, default=None, help="firewall-every (default: the "
                        "run config's)")
    parser.add_argument("--budget", type=float, default=None, help="firewall-time-budget-s "
                        "(default: the run config's)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--no-server-audit", action="store_true",
                        help="skip the server's audit of what was sent (timings only)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.scenarios.split(","):
        print(json.dumps(run_scenario(name, SCENARIOS[name], rounds=args.rounds,
                                      nodes=args.nodes, every=args.every, budget=args.budget,
                                      server_audit=not args.no_server_audit)), flush=True)


if __name__ == "__main__":
    main()
