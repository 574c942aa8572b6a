"""The client's firewall in a real deployment (issue 30): the node operator switches it on with
the SuperNode's --node-config, the node holds its known-leaky update (FedSGD on one sample), its
log says why, and the server counts a held reply from the code alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.federation import LocalFederation

pytestmark = pytest.mark.slow

CANARY = {"model": "lenet", "image-size": 16, "update-mode": "gradient", "batch-size": 1,
          "audit-enabled": False, "num-server-rounds": 1, "min-train-replies": 1,
          "round-timeout": 120.0, "node-wait-timeout": 120.0}


def test_a_supernode_with_the_firewall_in_its_node_config_holds_its_update(tmp_path: Path
                                                                           ) -> None:
    with LocalFederation(tmp_path / "fed") as fed:
        fed.make_credentials(["node0", "node1"])
        fed.start_superlink()
        for index, name in enumerate(("node0", "node1")):
            fed.register(name)
        fed.start_supernode("node0", 'partition-id=0 num-partitions=2 firewall="enforce" '
                                     'firewall-action="hold"')
        fed.start_supernode("node1", "partition-id=1 num-partitions=2")
        fed.wait_online(2)
        out = tmp_path / "out"
        run_id = fed.flwr_run(CANARY | {"output-dir": str(out)})
        with fed.stopping(run_id):
            status = fed.wait_run(run_id, 600)
        assert status == "finished:completed", fed.log("superlink")[-3000:]
        (path,) = out.glob("*/results.json")
        participation = {e["round"]: e for e in json.loads(path.read_text())["rounds"]}[1][
            "participation"]
        assert participation["firewall"] == {"off": 1, "allowed": 0, "hardened": 0, "held": 1}
        (failed,) = participation["failed-nodes"]
        assert failed["error"] == "code 1003: firewall: fedsgd-batch-1"
        assert "fedsnn firewall: round 1: held (fedsgd-batch-1)" in fed.log("node0")
