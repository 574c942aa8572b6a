"""The server's round loop in process (no Flower runtime): bad replies, vanishing and returning
nodes, a run that stops for lack of nodes, and resuming it from its checkpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, Context, Message, RecordDict

from client_app import create_client_app
from fedsnn.core.checkpoint import load_checkpoint
from fedsnn.core.config import RunConfig
from fedsnn.core.data import load_dataset
from fedsnn.core.results import RunFailed
from server_app import run
from fedsnn.tools.local_grid import Handler, LocalGrid, server_identity

# Small and fast: the ANN LeNet on 16x16 digits, one local epoch, no in-line audit.
BASE = {"model": "lenet", "image-size": 16, "local-epochs": 1, "num-server-rounds": 2,
        "audit-enabled": False, "round-timeout": 5.0, "node-wait-timeout": 1.0}


def corrupt(kind: str, arrays: ArrayRecord, rng: np.random.Generator) -> ArrayRecord:
    """A copy of `arrays` broken in the way `kind` names."""
    state = {key: array.numpy().copy() for key, array in arrays.items()}
    first = next(iter(state))
    if kind == "nan":
        state[first].flat[0] = np.nan
    elif kind == "inf":
        state[first].flat[-1] = np.inf
    elif kind == "shape":
        state[first] = state[first].ravel()[:-1]
    elif kind == "dtype":
        state[first] = state[first].astype(np.int32)
    elif kind == "missing":
        del state[first]
    elif kind == "extra":
        state["backdoor"] = np.ones(3, dtype=np.float32)
    elif kind == "norm":
        state = {k: v + 1e3 * rng.standard_normal(v.shape).astype(v.dtype) for k, v in state.items()}
    return ArrayRecord({key: Array(value) for key, value in state.items()})


def misbehaving(kind: str, honest: Handler) -> Handler:
    """A client that trains honestly, then sends its reply broken as `kind` says."""
    rng = np.random.default_rng(0)

    def handle(message: Message, context: Context) -> Message:
        reply = honest(message, context)
        if message.metadata.message_type != "train":
            return reply
        metrics = reply.content["metrics"]
        if kind == "no-weight":
            del metrics["num-examples"]
            return reply
        arrays = corrupt(kind, reply.content["arrays"], rng)
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)

    return handle


def federation(tmp_path: Path, nodes: int, overrides: dict[str, Any],
               handlers: Callable[[Handler], list[Handler]] | None = None) -> tuple[LocalGrid, RunConfig]:
    """A LocalGrid of honest nodes (or `handlers(honest)`) and the run config."""
    run_config = BASE | {"output-dir": str(tmp_path)} | overrides
    honest = create_client_app(run_config)
    chosen = handlers(honest) if handlers else [honest] * nodes
    return LocalGrid.partitioned(chosen, run_config), RunConfig.from_mapping(run_config)


def serve(grid: LocalGrid, config: RunConfig, resume_from: str = "") -> dict[str, Any]:
    """Run the real ServerApp body on `grid`; the results.json it wrote (also when it stopped)."""
    data = load_dataset(config.dataset, config.image_size)
    before = set(config.resolved_output_dir().glob("*/results.json"))
    with server_identity():
        try:
            run(grid, config, data, load_checkpoint(resume_from) if resume_from else None)
        except RunFailed as stop:
            print(stop)
    (path,) = set(config.resolved_output_dir().glob("*/results.json")) - before
    return json.loads(path.read_text()) | {"run-dir": str(path.parent)}


def entry(results: dict[str, Any], server_round: int) -> dict[str, Any]:
    return next(e for e in results["rounds"] if e["round"] == server_round)


BAD = ["nan", "inf", "shape", "dtype", "missing", "extra", "norm", "no-weight"]


def test_each_kind_of_bad_reply_is_rejected_and_the_rest_is_aggregated(tmp_path: Path) -> None:
    grid, config = federation(tmp_path, 0, {}, lambda honest: [honest, honest] + [
        misbehaving(kind, honest) for kind in BAD])
    results = serve(grid, config)

    assert results["status"] == "completed"
    expected_kinds = {"rejected-non-finite": 2, "rejected-shape": 1, "rejected-dtype": 1,
                      "rejected-missing-arrays": 1, "rejected-extra-arrays": 1,
                      "rejected-norm": 1, "rejected-malformed": 1}
    for server_round in (1, 2):
        train = entry(results, server_round)["train"]
        assert train["num-replies"] == 2
        assert train["rejected-replies"] == len(BAD)
        assert {k: v for k, v in train.items() if k in expected_kinds} == expected_kinds
        assert sorted(train["rejected-node-ids"]) == list(range(3, 3 + len(BAD)))
    accuracy = [entry(results, r)["central"]["accuracy"] for r in (0, 1, 2)]
    assert all(np.isfinite(accuracy)) and accuracy[2] > accuracy[0], accuracy
    model = torch.load(Path(results["run-dir"]) / "model.pt")
    assert all(torch.isfinite(v).all() for v in model.values())


def test_a_node_lost_mid_round_leaves_the_round_to_the_others_and_rejoins_later(
        tmp_path: Path) -> None:
    grid, config = federation(tmp_path, 3, {"min-train-replies": 2})

    def node_3_away_during_round_1_training(message: Message) -> None:
        if message.content["config"]["server-round"] == 1:
            if message.metadata.message_type == "train" and message.metadata.dst_node_id == 3:
                grid.offline.add(3)
            elif message.metadata.message_type == "evaluate":
                grid.offline.discard(3)

    grid.before_delivery = node_3_away_during_round_1_training
    results = serve(grid, config)

    assert results["status"] == "completed"
    assert entry(results, 1)["participation"] == {
        "sampled": 3, "replied": 2, "failed": 0, "no-reply": 1, "aggregated": True,
        "failed-nodes": [], "no-reply-node-ids": [3],
        "firewall": {"off": 2, "allowed": 0, "hardened": 0, "held": 0}}
    assert entry(results, 1)["train"]["num-replies"] == 2
    assert entry(results, 2)["participation"]["replied"] == 3  # node 3 is back


def test_too_few_replies_stop_the_run_with_the_reason(tmp_path: Path) -> None:
    grid, config = federation(tmp_path, 2, {"min-train-replies": 2})
    grid.before_delivery = lambda message: grid.offline.add(2)
    results = serve(grid, config)

    assert results["status"] == "failed" and results["resumable"] is True
    assert results["stop-reason"].startswith("round 1: 1 of 2 nodes replied without error")
    assert "min-train-replies is 2" in results["stop-reason"]
    assert "sent nothing within round-timeout=5 s: nodes [2]" in results["stop-reason"]
    assert entry(results, 1)["participation"]["no-reply-node-ids"] == [2]


def test_a_stopped_run_resumes_from_its_checkpoint_with_every_round(tmp_path: Path) -> None:
    overrides = {"num-server-rounds": 3, "min-available-nodes": 2}
    grid, config = federation(tmp_path, 2, overrides)

    def lose_node_2_after_round_2(message: Message) -> None:
        if message.content["config"]["server-round"] == 2 and \
                message.metadata.message_type == "evaluate":
            grid.offline.add(2)

    grid.before_delivery = lose_node_2_after_round_2
    stopped = serve(grid, config)
    assert stopped["status"] == "failed"
    assert "round 3: fewer nodes than the strategy needs" in stopped["stop-reason"]
    assert "node-wait-timeout" in stopped["stop-reason"]
    assert load_checkpoint(stopped["run-dir"]).server_round == 2

    grid.offline.clear()
    grid.before_delivery = lambda message: None
    resumed = serve(grid, config, resume_from=stopped["run-dir"])
    assert resumed["status"] == "completed"
    assert [e["round"] for e in resumed["rounds"]] == [0, 1, 2, 3]
    assert resumed["resumed-from"]["completed-rounds"] == 2
    assert entry(resumed, 2) == entry(stopped, 2)  # completed rounds carried over unchanged

    grid, config = federation(tmp_path / "uninterrupted", 2, overrides)
    straight = serve(grid, config)
    final = torch.load(Path(resumed["run-dir"]) / "model.pt")
    reference = torch.load(Path(straight["run-dir"]) / "model.pt")
    assert all(torch.allclose(final[k], reference[k], atol=1e-6) for k in reference)


def test_resuming_with_another_model_is_refused(tmp_path: Path) -> None:
    grid, config = federation(tmp_path, 2, {"num-server-rounds": 1})
    done = serve(grid, config)
    grid, config = federation(tmp_path, 2, {"num-server-rounds": 2, "model": "lenet5"})
    with server_identity(), pytest.raises(RunFailed, match="was made for model"):
        run(grid, config, load_dataset(config.dataset, config.image_size),
            load_checkpoint(done["run-dir"]))
