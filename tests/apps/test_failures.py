"""A run that does not complete says so: results.json with status `failed` (and why), and the
ServerApp raises `RunFailed` so that Flower marks the run failed (see tests/deploy for `flwr log`
and `flwr list` against a real SuperLink)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flwr.app import Context, Error, Message, RecordDict

import server_app
from client_app import create_client_app
from fedsnn.core.results import RunFailed
from fedsnn.tools.local_grid import LocalGrid, server_identity

BASE = {"model": "lenet", "image-size": 16, "local-epochs": 1, "num-server-rounds": 1,
        "audit-enabled": False, "round-timeout": 5.0, "node-wait-timeout": 1.0}


def serve(tmp_path: Path, overrides: dict[str, Any], *, raises: type[Exception] = RunFailed,
          match: str | None = None, nodes: list[Any] | None = None
          ) -> tuple[str, dict[str, Any]]:
    """Run the ServerApp (as Flower calls it) on two in-process nodes (`nodes`: their apps, else
    two ClientApps), expecting it to raise `raises`; (what it raised, the results.json it
    wrote)."""
    run_config = BASE | {"output-dir": str(tmp_path)} | overrides
    grid = LocalGrid.partitioned(nodes or [create_client_app(BASE)] * 2, BASE)
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    with server_identity(), pytest.raises(raises, match=match) as raised:
        server_app.create_server_app(run_config)(grid, context)
    (path,) = tmp_path.glob("*/results.json")
    return str(raised.value), json.loads(path.read_text())


@pytest.mark.parametrize("key,value,fragment", [
    ("num-server-rounds", 0, "num-server-rounds: expected a positive integer"),
    ("num-server-round", 3, "did you mean 'num-server-rounds'?"),
    ("dataset", "mnist:/nonexistent", "does not exist"),
])
def test_a_config_error_leaves_a_failed_results_json_and_fails_the_run(
        tmp_path: Path, key: str, value: object, fragment: str) -> None:
    raised, results = serve(tmp_path, {key: value})
    assert fragment in raised and "\n" not in raised
    assert results["status"] == "failed" and fragment in results["error"]
    assert results["config"][key] == value


def test_a_crash_mid_run_leaves_a_failed_results_json_not_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def crashing_evaluate(*args: Any, **kwargs: Any) -> tuple[float, float]:
        calls.append(1)
        if len(calls) > 1:  # round 0 evaluates fine, round 1 crashes
            raise RuntimeError("disk on fire")
        return 1.0, 0.1

    monkeypatch.setattr(server_app, "evaluate", crashing_evaluate)
    _, results = serve(tmp_path, {}, raises=RuntimeError, match="disk on fire")
    assert results["status"] == "failed"
    assert results["error"] == "RuntimeError: disk on fire"
    assert results["rounds"][1]["participation"]["replied"] == 2  # what ran is kept


def test_a_failed_node_is_named_in_the_round(tmp_path: Path) -> None:
    def broken(message: Message, context: Context) -> Message:  # as Flower reports a crash
        return Message(Error(code=1, reason="DatasetError: mnist: folder /x does not exist"),
                       reply_to=message)

    _, results = serve(tmp_path, {"min-train-replies": 2}, match="1 failed: nodes \\[2\\]",
                       nodes=[create_client_app(BASE), broken])
    (failed,) = results["rounds"][1]["participation"]["failed-nodes"]
    assert results["status"] == "failed" and failed["node-id"] == 2
    assert "does not exist" in failed["error"]


def test_a_crash_after_the_rounds_still_fails_the_run(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def no_judge(*args: Any, **kwargs: Any) -> None:
        raise OSError("judge cache unreadable")

    monkeypatch.setattr(server_app, "load_judge", no_judge)
    _, results = serve(tmp_path, {"audit-enabled": True, "audit-ground-truth": "none",
                                  "audit-max-batch": 1},  # no attack runs
                       raises=OSError, match="judge cache unreadable")
    assert results["status"] == "failed" and results["error"] == "OSError: judge cache unreadable"
