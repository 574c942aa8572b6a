"""Helpers shared by end-to-end tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flwr.simulation import run_simulation

from client_app import create_client_app
from fedsnn.core.results import RunFailed
from server_app import create_server_app


SIMULATION_BACKEND = {"client_resources": {"num_cpus": 1},
                      "init_args": {"num_cpus": 2, "include_dashboard": False}}


def simulate(out_dir: Path, server: dict[str, Any], client: dict[str, Any] | None = None,
             nodes: int = 3) -> dict[str, Any]:
    """Run a federation through Flower's simulation engine with run-config `server` (clients get
    `client`, default the same) and return its results.json, plus its folder as "run-dir" and,
    when the ServerApp raised `RunFailed` (a run that did not complete), its message as
    "raised"."""
    server = {"output-dir": str(out_dir), **server}
    raised = {}
    try:
        run_simulation(create_server_app(server), create_client_app(client or server),
                       num_supernodes=nodes, backend_config=SIMULATION_BACKEND)
    except RunFailed as error:
        raised = {"raised": str(error)}
    (run_dir,) = [p.parent for p in out_dir.glob("*/results.json")]
    return (json.loads((run_dir / "results.json").read_text()) | {"run-dir": str(run_dir)}
            | raised)
