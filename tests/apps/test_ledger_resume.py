"""Privacy ledgers survive a restart (issue 15, item 4): a run resumed from its checkpoint reports
the ε an uninterrupted run reports, equal to an independent dp-accounting / Opacus computation,
and a spike-DP budget cannot be overspent across the restart.

Server-side ledgers (central DP, its adaptive clipping norm, spike-level DP) travel in the
checkpoint; client-side ones (DP-SGD's Opacus history, local DP) in each node's
`privacy-ledger` file. Every federation runs the real ServerApp body and ClientApp in process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dp_accounting import NeighboringRelation, dp_event
from dp_accounting.rdp import rdp_privacy_accountant
from opacus.accountants import RDPAccountant

from client_app import create_client_app
from fedsnn.core.checkpoint import load_checkpoint
from fedsnn.core.config import RunConfig
from fedsnn.core.data import load_dataset
from fedsnn.core.results import RunFailed
from server_app import run
from fedsnn.tools.local_grid import LocalGrid, server_identity

BASE = {"model": "lenet", "image-size": 16, "local-epochs": 1, "batch-size": 32,
        "audit-enabled": False, "min-available-nodes": 2, "dp-delta": 1e-5}
NODES = 2


def serve(tmp_path: Path, overrides: dict[str, Any], *, rounds: int, resume_from: str = "",
          ledgers: Path | None = None) -> dict[str, Any]:
    """One federation of NODES in-process nodes (each with a `privacy-ledger` file under
    `ledgers` when given); its results.json, also when it stopped."""
    run_config = BASE | {"output-dir": str(tmp_path), "num-server-rounds": rounds} | overrides
    nodes = [{"partition-id": i, "num-partitions": NODES}
             | ({"privacy-ledger": str(ledgers / f"node-{i}.json")} if ledgers else {})
             for i in range(NODES)]
    grid = LocalGrid([create_client_app(run_config)] * NODES, nodes, run_config)
    config = RunConfig.from_mapping(run_config)
    before = set(tmp_path.glob("*/results.json"))
    with server_identity():
        try:
            run(grid, config, load_dataset(config.dataset, config.image_size),
                load_checkpoint(resume_from) if resume_from else None)
        except RunFailed as stop:
            print(stop)
    (path,) = set(tmp_path.glob("*/results.json")) - before
    return json.loads(path.read_text()) | {"run-dir": str(path.parent)}


def train(results: dict[str, Any], server_round: int) -> dict[str, Any]:
    return next(e for e in results["rounds"] if e["round"] == server_round)["train"]


def interrupted_and_whole(tmp_path: Path, overrides: dict[str, Any], *, first: int, total: int,
                          node_ledgers: bool = False) -> tuple[dict, dict]:
    """(resumed run after `first` rounds, uninterrupted run), each `total` rounds long."""
    ledgers = (lambda name: tmp_path / name) if node_ledgers else (lambda name: None)
    part = serve(tmp_path / "part", overrides, rounds=first, ledgers=ledgers("part-ledgers"))
    resumed = serve(tmp_path / "resumed", overrides, rounds=total, resume_from=part["run-dir"],
                    ledgers=ledgers("part-ledgers"))
    whole = serve(tmp_path / "whole", overrides, rounds=total, ledgers=ledgers("whole-ledgers"))
    return resumed, whole


def rdp_epsilon(events: list[dp_event.DpEvent]) -> float:
    ledger = rdp_privacy_accountant.RdpAccountant(
        neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE)
    for event in events:
        ledger.compose(event)
    return ledger.get_epsilon(1e-5)


def test_a_resumed_central_dp_run_reports_the_uninterrupted_epsilon(tmp_path: Path) -> None:
    z = 3.0
    resumed, whole = interrupted_and_whole(
        tmp_path, {"defenses": "central-dp", "central-dp-noise-multiplier": z}, first=2, total=4)
    assert resumed["status"] == whole["status"] == "completed"
    assert resumed["resumed-ledgers"] == ["central DP"]
    reported = train(resumed, 4)["central-dp-client-epsilon"]
    assert reported == pytest.approx(train(whole, 4)["central-dp-client-epsilon"], abs=1e-6)
    assert reported == pytest.approx(rdp_epsilon([dp_event.GaussianDpEvent(z / 2)] * 4), abs=1e-6)
    assert resumed["epsilon-units"]["central-dp-client-epsilon"]["relation"] == "replace-one"


def test_a_resumed_adaptive_run_continues_the_adapted_clipping_norm(tmp_path: Path) -> None:
    overrides = {"defenses": "central-dp", "central-dp-clipping": "server-adaptive",
                 "central-dp-noise-multiplier": 3.0}
    part = serve(tmp_path / "part", overrides, rounds=2)
    saved = load_checkpoint(part["run-dir"]).ledgers["central DP"]
    assert saved["clipping-norm"] != 1.0  # the norm adapted over two rounds
    resumed = serve(tmp_path / "resumed", overrides, rounds=3, resume_from=part["run-dir"])
    assert train(resumed, 3)["central-dp-clipping-norm"] == pytest.approx(saved["clipping-norm"])
    z_update = 3.0 * (1 - (2 * 3.0) ** -2 * 3.0 ** 2) ** -0.5  # Flower's split, σ_b = z
    release = dp_event.ComposedDpEvent([dp_event.GaussianDpEvent(z_update / 2),
                                        dp_event.GaussianDpEvent(3.0)])
    assert train(resumed, 3)["central-dp-client-epsilon"] == pytest.approx(
        rdp_epsilon([release] * 3), abs=1e-6)


def test_a_spike_dp_budget_cannot_be_overspent_across_a_restart(tmp_path: Path) -> None:
    overrides = {"defenses": "spike-dp", "spike-dp-epsilon-bit": 0.02}
    probe = serve(tmp_path / "probe", overrides, rounds=3)
    spent = [train(probe, r)["spike-dp-sample-epsilon"] for r in (1, 2, 3)]
    budget = (spent[1] + spent[2]) / 2  # two releases fit, three do not
    part = serve(tmp_path / "part", overrides | {"spike-dp-budget": budget}, rounds=2)
    assert part["status"] == "completed"
    resumed = serve(tmp_path / "resumed", overrides | {"spike-dp-budget": budget}, rounds=4,
                    resume_from=part["run-dir"])
    assert resumed["status"] == "failed"
    assert "round 3" in resumed["error"] and "budget spent" in resumed["error"]
    bits = 4 * 16 * 16  # T · C · H · W
    noise = 2 / (1 + 2.718281828459045 ** 0.02)
    ledger = rdp_privacy_accountant.RdpAccountant(
        neighboring_relation=NeighboringRelation.REPLACE_ONE)
    ledger.compose(dp_event.RandomizedResponseDpEvent(noise, 2), 2 * bits)
    assert train(part, 2)["spike-dp-sample-epsilon"] == pytest.approx(ledger.get_epsilon(1e-5),
                                                                       abs=1e-6)


def test_node_ledgers_keep_dp_sgd_and_local_dp_epsilon_across_a_restart(tmp_path: Path) -> None:
    overrides = {"defenses": "dp-sgd,local-dp", "update-mode": "gradient", "batch-size": 32,
                 "dp-sgd-noise-multiplier": 1.5, "local-dp-noise-multiplier": 4.0,
                 "learning-rate": 0.01}
    resumed, whole = interrupted_and_whole(tmp_path, overrides, first=2, total=4,
                                           node_ledgers=True)
    last_resumed, last_whole = train(resumed, 4), train(whole, 4)
    for key in ("dp-sgd-sample-epsilon-max", "local-dp-client-epsilon-max"):
        assert last_resumed[key] == pytest.approx(last_whole[key], abs=1e-6), key
    saved = json.loads((tmp_path / "part-ledgers" / "node-0.json").read_text())
    history = [tuple(entry) for entry in saved["ledgers"]["dp-sgd"]["history"]]
    assert sum(steps for *_, steps in history) == 4  # one Poisson-sampled step per round
    opacus = RDPAccountant()
    opacus.history = history
    assert last_resumed["dp-sgd-sample-epsilon-max"] == pytest.approx(opacus.get_epsilon(1e-5),
                                                                      abs=1e-6)
    assert last_resumed["local-dp-client-epsilon-max"] == pytest.approx(
        rdp_epsilon([dp_event.GaussianDpEvent(4.0 / 2)] * 4), abs=1e-6)
    units = resumed["epsilon-units"]
    assert units["dp-sgd-sample-epsilon-max"]["relation"] == "add/remove-one"
    assert units["dp-sgd-sample-epsilon-max"]["unit"] == "sample"


# -- simulated nodes without a privacy-ledger file (issue 27, item 3) ----------------------------

SIMULATED = {"defenses": "dp-sgd", "update-mode": "gradient", "batch-size": 32,
             "dp-sgd-noise-multiplier": 1.5, "learning-rate": 0.01}


def test_simulated_node_ledgers_continue_across_a_resume(tmp_path: Path) -> None:
    """No node has its own `privacy-ledger`: each keeps one under the run folder, by partition,
    and the resumed run continues it (before issue 27 ε restarted: 4.61 instead of 6.10)."""
    resumed, whole = interrupted_and_whole(tmp_path, SIMULATED, first=2, total=4)
    assert resumed["node-ledgers"]["complete"] and Path(resumed["node-ledgers"]["dir"]).is_dir()
    assert sorted(p.name for p in Path(resumed["node-ledgers"]["dir"]).iterdir()) == [
        "partition-0.json", "partition-1.json"]
    for server_round in (3, 4):
        assert train(resumed, server_round)["dp-sgd-sample-epsilon-max"] == pytest.approx(
            train(whole, server_round)["dp-sgd-sample-epsilon-max"], abs=1e-9)
        assert train(resumed, server_round)["dp-epsilon-understated-max"] == 0


def test_a_resume_without_the_node_ledgers_marks_every_later_epsilon_understated(
        tmp_path: Path) -> None:
    part = serve(tmp_path / "part", SIMULATED, rounds=2)
    for path in Path(part["node-ledgers"]["dir"]).iterdir():  # as a run before issue 27 left it
        path.unlink()
    Path(part["node-ledgers"]["dir"]).rmdir()
    resumed = serve(tmp_path / "resumed", SIMULATED, rounds=4, resume_from=part["run-dir"])
    assert resumed["status"] == "completed" and not resumed["node-ledgers"]["complete"]
    assert [train(resumed, r)["dp-epsilon-understated-max"] for r in (3, 4)] == [1, 1]
    assert train(part, 2)["dp-epsilon-understated-max"] == 0


@pytest.mark.slow
def test_flowers_simulation_engine_keeps_each_nodes_ledger_under_the_run_folder(
        tmp_path: Path) -> None:
    """Through Ray, as `flwr run` simulates: every partition's ledger file is in the run folder,
    its history has both rounds, and no ε is marked understated."""
    from tests.helpers import simulate

    results = simulate(tmp_path, BASE | SIMULATED | {"num-server-rounds": 2}, nodes=2)
    assert results["status"] == "completed", results.get("raised")
    folder = Path(results["node-ledgers"]["dir"])
    assert folder.parent == Path(results["run-dir"])
    for partition in (0, 1):
        saved = json.loads((folder / f"partition-{partition}.json").read_text())
        assert sum(steps for *_, steps in saved["ledgers"]["dp-sgd"]["history"]) == 2
    assert train(results, 2)["dp-epsilon-understated-max"] == 0
