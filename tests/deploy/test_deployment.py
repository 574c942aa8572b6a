"""A real deployment: SuperLink (TLS, SuperNode authentication, Fleet API on 127.0.0.1 with a free
port) and SuperNodes as separate processes, started through the deploy/ scripts.

One federation serves the whole module; every process it starts is stopped by PID when the
module ends, also when a test fails (LocalFederation is a context manager). Every wait has a
timeout, so nothing here can hang CI.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.compare import TWO_ROUNDS
from deploy.federation import LocalFederation

pytestmark = pytest.mark.slow

NODES = ("node0", "node1")
RUN_TIMEOUT = 600.0  # a 2-round run takes 1-4 minutes on a busy 2-core machine

# lenet-snn with FedSGD (one batch per client per round) keeps the clients cheap and gives the
# in-line audit something to attack (fedavg updates over hundreds of samples are skipped by
# design). deploy/compare.py times this same run against the simulation engine.
E2E = TWO_ROUNDS


def node_config(index: int) -> str:
    return f"partition-id={index} num-partitions={len(NODES)}"


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    """A SuperLink with TLS and node auth, and two registered SuperNodes online."""
    with LocalFederation(tmp_path_factory.mktemp("federation")) as fed:
        fed.make_credentials([*NODES, "rogue"])
        fed.start_superlink()
        for index, name in enumerate(NODES):
            fed.register(name)
            fed.start_supernode(name, node_config(index))
        fed.wait_online(len(NODES))
        yield fed


def run_to_end(fed: LocalFederation, run_config: dict[str, Any], out: Path) -> tuple[str, dict]:
    """Submit a run, wait for it (stopping it on timeout) and return (status, results.json)."""
    run_id = fed.flwr_run(run_config | {"output-dir": str(out)})
    with fed.stopping(run_id):
        status = fed.wait_run(run_id, RUN_TIMEOUT)
    (path,) = out.glob("*/results.json")
    return status, json.loads(path.read_text()) | {"run-dir": str(path.parent)}


def rounds(results: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {entry["round"]: entry for entry in results["rounds"]}


def test_two_rounds_of_lenet_snn_over_tls_with_the_audit(federation: LocalFederation,
                                                         tmp_path: Path) -> None:
    status, results = run_to_end(federation, E2E, tmp_path)

    assert status == "finished:completed", federation.log("superlink")[-3000:]
    assert results["status"] == "completed" and results["config"]["model"] == "lenet-snn"
    by_round = rounds(results)
    assert sorted(by_round) == [0, 1, 2]
    for server_round in (1, 2):
        assert by_round[server_round]["participation"]["replied"] == len(NODES)
        assert by_round[server_round]["train"]["num-replies"] == len(NODES)
        assert 0.0 <= by_round[server_round]["central"]["accuracy"] <= 1.0
    audit = json.loads((Path(results["run-dir"]) / "audit.json").read_text())
    rows = audit["attacks"]
    assert sorted(row["partition-id"] for row in rows) == [0, 1], audit
    assert all(row["round"] == 1 and row["status"] for row in rows)
    assert results["audit"]["attacked"] == len(NODES)


def test_a_supernode_with_an_unregistered_key_is_refused(federation: LocalFederation) -> None:
    known = {node["node-id"] for node in federation.nodes()}
    process = federation.start_supernode("rogue", node_config(0))
    assert process.wait(timeout=120) != 0
    assert "Failed to activate SuperNode" in federation.log("rogue")
    assert {node["node-id"] for node in federation.nodes()} == known


def test_a_plaintext_supernode_cannot_connect_to_the_tls_port(federation: LocalFederation
                                                              ) -> None:
    process = federation.start_supernode("plaintext", node_config(0), tls=False, max_retries=2)
    assert process.wait(timeout=120) != 0
    log = federation.log("plaintext")
    assert "UNAVAILABLE" in log and "SuperNode ID" not in log, log[-2000:]


def test_a_node_killed_mid_round_leaves_the_round_to_the_other_and_rejoins(
        federation: LocalFederation, tmp_path: Path) -> None:
    """SIGKILL node1 while it trains in round 1: the round completes with node0 after at most
    round-timeout; node1 restarts once the SuperLink has marked it offline (a restart before
    that is refused) and trains again in round 2 (min-available-nodes=2 waits for it, bounded
    by node-wait-timeout)."""
    settings = {"model": "lenet", "image-size": 16, "local-epochs": 1, "audit-enabled": False,
                "num-server-rounds": 2, "min-available-nodes": 2, "min-train-replies": 1,
                "round-timeout": 120.0, "node-wait-timeout": 180.0,
                "output-dir": str(tmp_path)}
    seen = federation.log("node1").count("Receiving: train message")
    run_id = federation.flwr_run(settings)
    with federation.stopping(run_id):
        deadline = time.monotonic() + 180
        while federation.log("node1").count("Receiving: train message") == seen:
            assert time.monotonic() < deadline, "node1 never received its round-1 train message"
            time.sleep(0.5)
        federation.kill("node1")  # SIGKILL: the SuperNode and its ClientApp, mid-round
        killed = time.monotonic()
        while federation.node_status("node1") == "online":
            assert time.monotonic() < killed + 150, "the SuperLink never marked node1 offline"
            time.sleep(2)
        federation.start_supernode("node1", node_config(1))
        status = federation.wait_run(run_id, RUN_TIMEOUT)
    (path,) = tmp_path.glob("*/results.json")
    by_round = rounds(json.loads(path.read_text()))

    assert status == "finished:completed"
    first = by_round[1]["participation"]
    assert (first["sampled"], first["replied"], first["failed"] + first["no-reply"]) == (2, 1, 1)
    assert by_round[1]["train"]["num-replies"] == 1
    assert by_round[2]["participation"]["replied"] == 2  # node1 is back
    federation.wait_online(len(NODES))



FAST = {"model": "lenet", "image-size": 16, "local-epochs": 1, "audit-enabled": False,
        "num-server-rounds": 1, "round-timeout": 120.0, "node-wait-timeout": 60.0}


def run_ids(fed: LocalFederation) -> set[int]:
    out = fed._flwr("list", "fedsnn-local", "--format", "json").stdout
    return {int(run["run-id"]) for run in json.loads(out)["runs"]}


def test_a_config_error_shows_in_the_stream_and_flwr_log_and_fails_the_run(
        federation: LocalFederation, tmp_path: Path) -> None:
    before = run_ids(federation)
    done = federation.flwr_run_streamed(FAST | {"num-server-rounds": 0,
                                                "output-dir": str(tmp_path)})
    reason = "num-server-rounds: expected a positive integer, got 0"
    assert reason in done.stdout + done.stderr, (done.returncode, done.stdout[-3000:])
    (run_id,) = run_ids(federation) - before
    assert federation.wait_run(run_id, 120) == "finished:failed"
    assert reason in federation.run_log(run_id)
    (path,) = tmp_path.glob("*/results.json")
    results = json.loads(path.read_text())
    assert results["status"] == "failed" and reason in results["error"]
    print(f"flwr run --stream exit status on a failed run: {done.returncode}")


def test_a_server_side_stop_shows_in_flwr_log_and_fails_the_run(federation: LocalFederation,
                                                                 tmp_path: Path) -> None:
    run_id = federation.flwr_run(FAST | {"min-train-replies": 3, "output-dir": str(tmp_path)})
    with federation.stopping(run_id):
        status = federation.wait_run(run_id, RUN_TIMEOUT)
    assert status == "finished:failed"
    assert "min-train-replies is 3" in federation.run_log(run_id)
    (path,) = tmp_path.glob("*/results.json")
    results = json.loads(path.read_text())
    assert results["status"] == "failed" and "min-train-replies is 3" in results["error"]


def test_registrations_survive_a_superlink_restart_with_a_database(tmp_path: Path) -> None:
    """docs/deployment.md, *Restarting the SuperLink*: with --database the registered key and
    its node id are still there after a restart, and the running SuperNode reconnects."""
    with LocalFederation(tmp_path / "fed") as fed:
        fed.make_credentials(["node0"])
        database = tmp_path / "superlink.db"
        fed.start_superlink(database=database)
        node_id = fed.register("node0")
        fed.start_supernode("node0", node_config(0))
        fed.wait_online(1)
        fed.kill("superlink", sig=signal.SIGTERM)
        fed.start_superlink(database=database)
        assert [str(n["node-id"]) for n in fed.nodes()] == [str(node_id)]
        fed.wait_online(1, timeout=180)  # the SuperNode reconnected by itself


def test_on_a_simulation_superlink_a_config_error_fails_the_run(tmp_path: Path) -> None:
    """`flwr run .`'s local simulation: a config error used to end finished:completed."""
    with LocalFederation(tmp_path / "fed", simulation=True) as fed:
        fed.start_superlink()
        run_id = fed.flwr_run(FAST | {"num-server-rounds": 0, "output-dir": str(tmp_path / "out")})
        status = fed.wait_run(run_id, RUN_TIMEOUT)
        reason = "num-server-rounds: expected a positive integer, got 0"
        assert status == "finished:failed", fed.log("superlink")[-3000:]
        assert reason in fed.run_log(run_id)
        (path,) = (tmp_path / "out").glob("*/results.json")
        assert json.loads(path.read_text())["status"] == "failed"
