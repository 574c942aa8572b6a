"""The in-line audit inside a real Flower simulation: a real leak detected while training runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import simulate

pytestmark = pytest.mark.slow

FEDSGD_AUDIT = {"num-server-rounds": 1, "update-mode": "gradient", "batch-size": 1,
                "learning-rate": 0.01, "audit-rounds": "1", "audit-max-clients": 2,
                "audit-attack": "idlg", "audit-iterations": 100, "audit-time-budget-s": 120.0}


def _audit(results: dict) -> dict:
    return json.loads((Path(results["run-dir"]) / "audit.json").read_text())


def test_idlg_in_line_recovers_lenet_training_samples(tmp_path: Path) -> None:
    results = simulate(tmp_path, FEDSGD_AUDIT | {"model": "lenet"}, nodes=2)
    audit = _audit(results)
    rows = audit["attacks"]
    assert len(rows) == 2 and all(row["status"] == "ok" for row in rows), rows
    assert all(row["inferred-labels"] == row["true-labels"] for row in rows)
    assert max(row["psnr"] for row in rows) >= 25.0
    # a real leak, not a guess: far above what the mean image scores on the same samples
    assert min(row["psnr"] for row in rows) > audit["baselines"]["mean-image"]["psnr"] + 10
    assert results["audit"]["scored"] == 2
    assert (Path(results["run-dir"]) / "report.html").is_file()
    assert (Path(results["run-dir"]) / rows[0]["image"]).is_file()


def test_the_same_audit_on_the_spiking_twin_completes_and_is_scored(tmp_path: Path) -> None:
    results = simulate(tmp_path, FEDSGD_AUDIT | {"model": "lenet-snn", "audit-optimizer": "adam",
                                                 "audit-iterations": 60}, nodes=2)
    rows = _audit(results)["attacks"]
    assert results["status"] == "completed" and len(rows) == 2
    assert all(row["status"] in ("ok", "timeout") and row["psnr"] is not None for row in rows)


# FedAvg as clients really send it: 8 images each, 4 local epochs of full-batch SGD; the curious
# server's default (audit-attack = auto) replays that training (the unrolled attack).
FEDAVG_AUDIT = {"num-server-rounds": 1, "update-mode": "fedavg", "optimizer": "sgd",
                "learning-rate": 0.01, "local-epochs": 4, "batch-size": 8,
                "max-train-samples": 8, "audit-rounds": "1", "audit-max-clients": 2,
                "audit-unrolled-iterations": 200, "audit-time-budget-s": 300.0, "model": "lenet"}


def test_unrolled_attack_in_line_identifies_images_of_fedavg_updates(tmp_path: Path) -> None:
    results = simulate(tmp_path, FEDAVG_AUDIT, nodes=2)
    audit = _audit(results)
    assert audit["plan"]["attack"] == "auto" and "local-epochs" in audit["threat-model"]["granted"]
    assert [row["attack"] for row in audit["attacks"]] == ["unrolled", "unrolled"]
    summary = audit["summary"]
    best_guess = max(g["value"] for g in summary["identified-guesses"].values())
    assert summary["identified"]["value"] > best_guess, summary
    assert "identified" in (Path(results["run-dir"]) / "report.md").read_text()
