"""Per-round checkpoints: the global model, the results so far and the server's privacy ledgers
(central-DP releases, adaptive clipping norm, spike-DP releases: each wrapper's `state_dict`), so
a stopped run can resume and report the ε an uninterrupted run would. Client-side ledgers (local
DP, DP-SGD, spike-DP on the node) live on the nodes (`clients.privacy`, node config
`privacy-ledger`).

One file per run directory, `checkpoint.pt`, replaced atomically after every completed round:
a crash mid-write leaves the previous checkpoint intact. It holds plain tensors and JSON-like
values only, so it loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fedsnn.core.results import RunRecord

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says which file and why."""


@dataclass(frozen=True)
class Checkpoint:
    """The state after `server_round` completed rounds."""

    server_round: int
    model_state: dict[str, torch.Tensor]
    results: dict[str, Any]  # results.json as it was after that round
    path: Path
    ledgers: dict[str, Any] = field(default_factory=dict)  # wrapper label -> its state_dict


def save_checkpoint(run_dir: Path, *, server_round: int, model_state: Mapping[str, torch.Tensor],
                    results: Mapping[str, Any], ledgers: Mapping[str, Any] | None = None) -> Path:
    """Write `run_dir/checkpoint.pt` atomically and return its path."""
    path = run_dir / CHECKPOINT_NAME
    payload = {"format": FORMAT, "round": server_round,
               "model-state": {k: v.detach().cpu() for k, v in model_state.items()},
               "results": dict(results), "ledgers": dict(ledgers or {})}
    handle, tmp = tempfile.mkstemp(dir=run_dir, prefix=f".{CHECKPOINT_NAME}.", suffix=".tmp")
    os.close(handle)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(location: str | Path) -> Checkpoint:
    """Load a checkpoint from a run directory or a checkpoint file.

    Raises:
        CheckpointError: no checkpoint there, or the file is not one of ours.

    Example:
        >>> load_checkpoint("/runs/20260101-120000-lenet").server_round  # doctest: +SKIP
        3
    """
    path = Path(location).expanduser()
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"resume-from: no checkpoint at {path} (expected a run directory "
                              f"holding {CHECKPOINT_NAME}, or the file itself)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is one message
        raise CheckpointError(f"resume-from: cannot read {path} ({error})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"resume-from: {path} is not a fedsnn checkpoint (format {FORMAT})")
    return Checkpoint(int(payload["round"]), dict(payload["model-state"]),
                      dict(payload["results"]), path.resolve(), dict(payload.get("ledgers", {})))


def resume_into(checkpoint: Checkpoint, model: torch.nn.Module, record: RunRecord) -> int:
    """Load the checkpoint's model into `model` and its completed rounds into `record`; return
    the first round still to run.

    Raises:
        CheckpointError: the checkpoint was made for another model (its spec differs).
    """
    spec = record.data.get("model-spec")
    if checkpoint.results.get("model-spec") != spec:
        raise CheckpointError(f"resume-from: {checkpoint.path} was made for model "
                              f"{checkpoint.results.get('model-spec')}, but this run builds {spec}")
    model.load_state_dict(checkpoint.model_state)
    record.data["rounds"] = [dict(entry) for entry in checkpoint.results.get("rounds", [])]
    record.set("resumed-from", {"checkpoint": str(checkpoint.path),
                                "completed-rounds": checkpoint.server_round})
    return checkpoint.server_round + 1
