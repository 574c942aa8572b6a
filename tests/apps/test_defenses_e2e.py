"""Every defense through the real ServerApp body and ClientApp, in process (tests/deploy's grid):
the figures reach results.json, ε grows with the rounds (clients keep their state across rounds),
and a spent spike-level budget stops training with a clear reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from client_app import create_client_app
from fedsnn.core.privacy.mia_run import audit_run
from fedsnn.core.privacy.spikes import RandomizedResponse, SpikeLedger
from server_app import run
from fedsnn.tools.local_grid import federate_in_process

pytestmark = pytest.mark.slow  # federations, in process

BASE = {"model": "lenet", "image-size": 16, "local-epochs": 1, "num-server-rounds": 2,
        "audit-enabled": False, "batch-size": 32, "min-available-nodes": 3}


def serve(tmp_path: Path, overrides: dict[str, Any], nodes: int = 3) -> dict[str, Any]:
    run_config = BASE | {"output-dir": str(tmp_path)} | overrides
    run_dir = federate_in_process(run, create_client_app(run_config), run_config, nodes)
    return json.loads((run_dir / "results.json").read_text()) | {"run-dir": run_dir}


def train_metrics(results: dict[str, Any], server_round: int) -> dict[str, Any]:
    return next(e for e in results["rounds"] if e["round"] == server_round)["train"]


EPSILONS = ["central-dp-client-epsilon", "local-dp-client-epsilon-max",
            "dp-sgd-sample-epsilon-max", "spike-dp-sample-epsilon"]


def test_all_defenses_compose_and_report_growing_epsilon(tmp_path: Path) -> None:
    results = serve(tmp_path, {"defenses": "central-dp,local-dp,dp-sgd,spike-dp",
                               "spike-dp-epsilon-bit": 0.05})
    assert results["status"] == "completed"
    first, second = train_metrics(results, 1), train_metrics(results, 2)
    for key in EPSILONS:
        assert 0 < first[key] < second[key], key
    assert first["spike-dp-bit-epsilon"] == 0.05
    assert first["spike-dp-sample-epsilon"] > 10 * first["spike-dp-bit-epsilon"]
    assert first["central-dp-delta"] == 1e-5 and first["num-replies"] == 3
    # the membership audit of the final model: 3 clients' train splits against held-out data
    mia = audit_run(results["run-dir"])
    assert 0.0 <= mia.auc <= 1.0 and (results["run-dir"] / "mia.json").is_file()
    assert mia.num_members + mia.num_nonmembers == pytest.approx(1797 / 2, abs=2)


def test_the_spiking_lenet_trains_under_dp_sgd_and_spike_level_dp(tmp_path: Path) -> None:
    results = serve(tmp_path, {"model": "lenet-snn", "encoding": "poisson",
                               "defenses": "dp-sgd,spike-dp", "num-server-rounds": 1})
    assert results["status"] == "completed"
    metrics = train_metrics(results, 1)
    assert metrics["dp-sgd-sample-epsilon-max"] > 0 and metrics["spike-dp-sample-epsilon"] > 0


def test_a_spent_spike_budget_stops_training_with_a_clear_reason(tmp_path: Path) -> None:
    ledger = SpikeLedger(RandomizedResponse(0.02), bits_per_sample=4 * 16 * 16, delta=1e-5)
    budget = (ledger.sample_epsilon(1) + ledger.sample_epsilon(2)) / 2  # one round fits, two don't
    results = serve(tmp_path, {"defenses": "spike-dp", "spike-dp-epsilon-bit": 0.02,
                               "spike-dp-budget": budget})
    assert results["status"] == "failed"
    assert "round 2" in results["stop-reason"] and "budget spent" in results["stop-reason"]
    assert train_metrics(results, 1)["spike-dp-sample-epsilon"] <= budget
