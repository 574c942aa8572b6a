"""End to end through Flower's simulation engine (Ray): a real 2-round federation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from fedsnn.core.config import RunConfig
from fedsnn.core.data import load_dataset
from fedsnn.core.models import build_model, spec_for
from tests.helpers import simulate

pytestmark = pytest.mark.slow


def problems(results: dict[str, Any], rounds: int, nodes: int) -> list[str]:
    """Why a run did not train properly (empty if it did)."""
    found = []
    if results["status"] != "completed":
        found.append(f"status {results['status']}")
    for r in range(1, rounds + 1):
        entry = next((e for e in results["rounds"] if e["round"] == r), {})
        if entry.get("train", {}).get("num-replies") != nodes:
            found.append(f"round {r}: {entry.get('train', {}).get('num-replies', 0)} replies")
        if "accuracy" not in entry.get("central", {}):
            found.append(f"round {r}: no central accuracy")
    return found


def test_two_rounds_train_the_global_model_and_record_every_round(tmp_path: Path) -> None:
    overrides = {"num-server-rounds": 2, "output-dir": str(tmp_path), "model": "lenet",
                 "audit-enabled": False}
    results = simulate(tmp_path, overrides)
    assert problems(results, rounds=2, nodes=3) == []
    assert results["seed"] == 0 and results["config"]["model"] == "lenet"

    config = RunConfig.from_mapping(overrides)
    data = load_dataset(config.dataset)
    initial = build_model(spec_for(config, 1, 10, 28), dlg_init=True, seed=config.seed).state_dict()
    final = torch.load(Path(results["run-dir"]) / "model.pt")
    assert any(not torch.allclose(initial[k], final[k].float()) for k in initial)
    accuracy = [e["central"]["accuracy"] for e in results["rounds"]]
    assert accuracy[-1] > accuracy[0] + 0.2, accuracy  # it learned something in 2 rounds
    assert data.note in results["dataset"]


def test_a_run_whose_clients_all_fail_is_detected(tmp_path: Path) -> None:
    server = {"num-server-rounds": 1, "output-dir": str(tmp_path), "audit-enabled": False}
    results = simulate(tmp_path, server, client=server | {"dataset": "mnist:/nonexistent"},
                       nodes=2)
    assert results["status"] == "failed"  # fewer replies than min-train-replies stop the run
    assert "min-train-replies" in results["raised"]  # and Flower sees the ServerApp fail
    assert results["stop-reason"].startswith("round 1: 0 of 2 nodes replied without error (2 failed")
    assert problems(results, rounds=1, nodes=2)
