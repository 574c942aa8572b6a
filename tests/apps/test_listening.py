"""What a simulation listens on. Flower's own simulation parts open no port; Ray (2.55) binds
its gRPC servers (GCS, raylet, every worker's core worker) and its runtime-env agent to all
interfaces or to the host's IP whatever `node_ip_address` says, and `flwr run` forwards only
num-cpus/num-gpus/logging-level/log-to-driver to `ray.init`. docs/deployment.md says so and how
to confine it. This test pins that down: any listener that is not one of Ray's, or Ray's
dashboard, fails it; so does Ray starting to honour loopback (then the docs must change)."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from tests.helpers import SIMULATION_BACKEND
from tests.net import listening_sockets

pytestmark = pytest.mark.slow
RAY_PROCESSES = ("gcs_server", "raylet", "ray::")


def public(address: str) -> bool:
    return not ipaddress.ip_address(address).is_loopback


def simulate_and_list() -> list[tuple[int, str, str, int]]:
    """Listening sockets of this process and its children while a 1-node simulation is up."""
    seen: list[Any] = []
    server, client = ServerApp(), ClientApp()

    @client.train()
    def train(msg: Message, context: Context) -> Message:
        return Message(RecordDict({"config": ConfigRecord({"ok": 1})}), reply_to=msg)

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        nodes: list[int] = []
        deadline = time.monotonic() + 120
        while not nodes and time.monotonic() < deadline:
            nodes = list(grid.get_node_ids())
            time.sleep(0.5)
        (node,) = nodes
        message = Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=node,
                          message_type="train")
        list(grid.send_and_receive([message], timeout=120))
        seen.extend(listening_sockets())

    run_simulation(server, client, num_supernodes=1, backend_config=SIMULATION_BACKEND)
    return seen


def test_only_rays_own_servers_listen_beyond_loopback() -> None:
    sockets = simulate_and_list()
    exposed = [s for s in sockets if public(s[2])]
    assert exposed, "Ray now keeps to loopback: update docs/deployment.md and this test"
    foreign = [s for s in exposed if not s[1].startswith(RAY_PROCESSES) and s[1] != "python"]
    assert foreign == [], foreign
    assert all(port != 8265 for *_, port in sockets)  # no dashboard
