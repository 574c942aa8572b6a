"""Global models of a real FedAvg run, checkpointed after chosen rounds (trained rate-decoder victims).

The project's own ServerApp (strategy stack, validation, central evaluation, per-round checkpoint)
and ClientApp (partitioned data, local training) run in this process on `LocalGrid` instead of
Flower's simulation runtime. The ServerApp keeps one `checkpoint.pt` per run folder (the latest
round), so the run goes in legs through its own `resume-from`: train to the first chosen round,
copy its checkpoint, resume from it to the next, and so on. Each leg's results.json records the
accuracy of every round so far.

Example:
    python -m experiments.fedavg_checkpoints --model lenet-snn --rounds 1,5,10 \
        --dataset mnist:../shared/data/mnist --out runs/rate-decoder/fedavg
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from flwr.app import Context, RecordDict

import server_app
from client_app import create_client_app
from fedsnn.core.checkpoint import CHECKPOINT_NAME, load_checkpoint
from fedsnn.tools.local_grid import LocalGrid, server_identity


def checkpoint_path(out: Path, model: str, server_round: int) -> Path:
    """Where the checkpoint of `model` after `server_round` rounds is kept."""
    return out / model / f"round-{server_round}.pt"


def federate(model: str, rounds: list[int], *, out: Path, num_nodes: int,
             run_config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Train `model` by FedAvg on `num_nodes` in-process nodes up to max(rounds), keeping the
    global model after each of `rounds`; returns one summary per kept round."""
    kept: list[dict[str, Any]] = []
    previous: Path | None = None
    for server_round in sorted(rounds):
        legs = out / model / "legs"
        config = {**run_config, "model": model, "num-server-rounds": server_round,
                  "audit-enabled": False, "output-dir": str(legs),
                  "run-name": f"{model}-to-{server_round}",
                  **({"resume-from": str(previous)} if previous else {})}
        grid = LocalGrid([create_client_app(config)] * num_nodes,
                         [{"partition-id": i, "num-partitions": num_nodes}
                          for i in range(num_nodes)], config)
        grid.skip_types = frozenset({"evaluate"})  # the server evaluates centrally every round
        random.seed(int(config.get("seed", 0)))  # Flower samples nodes with `random`
        context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
        with server_identity():
            server_app.create_server_app(config)(grid, context)
        run_dir = max(legs.glob(f"*-{model}-to-{server_round}"), key=lambda p: p.stat().st_mtime)
        checkpoint = load_checkpoint(run_dir)
        if checkpoint.server_round != server_round:
            raise RuntimeError(f"{run_dir}: checkpoint after round {checkpoint.server_round}, "
                               f"expected {server_round}")
        target = checkpoint_path(out, model, server_round)
        shutil.copyfile(run_dir / CHECKPOINT_NAME, target)
        previous = target
        accuracy = checkpoint.results["rounds"][-1].get("central", {}).get("accuracy")
        kept.append({"model": model, "round": server_round, "checkpoint": str(target),
                     "run-dir": str(run_dir), "test-accuracy": accuracy})
    return kept


def _value(text: str) -> Any:
    """A run-config value from the command line: JSON when it parses (numbers, booleans), else text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="lenet-snn, lenet, ...")
    parser.add_argument("--rounds", default="1,5,10", help="rounds after which to keep the model")
    parser.add_argument("--dataset", default="mnist:../shared/data/mnist")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="another run-config value (e.g. local-epochs=1), repeatable")
    parser.add_argument("--out", default="runs/rate-decoder/fedavg")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    extra = dict(item.split("=", 1) for item in args.set)
    run_config = {"dataset": args.dataset, "seed": args.seed,
                  **{k: _value(v) for k, v in extra.items()}}
    out = Path(args.out).resolve()  # the ServerApp takes a relative output-dir from $HOME
    (out / args.model).mkdir(parents=True, exist_ok=True)
    kept = federate(args.model, [int(r) for r in args.rounds.split(",")], out=out,
                    num_nodes=args.nodes, run_config=run_config)
    (out / args.model / "rounds.json").write_text(json.dumps(kept, indent=1))
    print(json.dumps(kept, indent=1))


if __name__ == "__main__":
    main()
