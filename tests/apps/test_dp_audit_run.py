"""`dp-audit = true` in a run: both ε figures per mechanism in results.json and audit.json; a
claim the attack disproves fails the run and names the mechanism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import strategies.dp_audit as dp_audit
from client_app import create_client_app
from fedsnn.tools.local_grid import federate_in_process
from server_app import run

CONFIG = {"dataset": "digits", "image-size": 8, "model": "lenet", "num-server-rounds": 1,
          "local-epochs": 1, "min-available-nodes": 2, "audit-enabled": False,
          "defenses": "local-dp,dp-sgd", "dp-audit": True, "dp-audit-canaries": 200}


def _run(tmp_path: Path) -> tuple[dict, dict]:
    config = CONFIG | {"output-dir": str(tmp_path)}
    run_dir = federate_in_process(run, create_client_app(config), config, 2)
    return (json.loads((run_dir / "results.json").read_text()),
            json.loads((run_dir / "audit.json").read_text()))


@pytest.mark.slow
def test_a_dp_run_reports_both_figures_per_mechanism(tmp_path: Path) -> None:
    results, audit = _run(tmp_path)
    assert results["status"] == "completed"
    entry = results["dp-audit"]
    assert entry == audit["dp-audit"] and entry["claims"] == "hold"
    rows = {row["mechanism"]: row for row in entry["mechanisms"]}
    assert set(rows) == {"local-dp", "dp-sgd"}
    reported = results["rounds"][-1]["train"]
    assert rows["local-dp"]["accounted-epsilon"] == pytest.approx(
        reported["local-dp-client-epsilon-max"])
    assert rows["dp-sgd"]["accounted-epsilon"] == pytest.approx(
        reported["dp-sgd-sample-epsilon-max"], rel=1e-6)


@pytest.mark.slow
def test_a_disproved_claim_fails_the_run_and_names_the_mechanism(tmp_path: Path,
                                                                 monkeypatch) -> None:
    def leaky(wrapper, facts, m):  # a local DP whose releases give every canary away
        included = np.arange(m) % 2 == 0
        return included.astype(float), included, 1.0
    name, _, *rest = dp_audit.AUDITS[dp_audit.LocalDP]
    monkeypatch.setitem(dp_audit.AUDITS, dp_audit.LocalDP, (name, leaky, *rest))
    results, audit = _run(tmp_path)
    assert results["status"] == "failed" and results["privacy-claim"] == "violated"
    assert "local-dp" in results["error"] and "dp-sgd" not in results["error"]
    assert audit["dp-audit"]["violated"] == ["local-dp"]
