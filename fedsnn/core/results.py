"""The run directory and results.json: written atomically, so an interrupted run loses nothing
that was already written."""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class RunFailed(RuntimeError):
    """The run ended without completing; its results.json (status `failed`) says why.

    The ServerApp raises it after writing the results, so that Flower marks the run failed
    (`flwr list`: finished:failed), logs the reason (`flwr log`, `flwr run --stream`) and
    `run_simulation` raises. An exception, not `SystemExit`: Flower catches only `Exception`
    in the ServerApp's thread/process, and a `SystemExit` there ended runs as completed (or
    with no status at all in deployment).
    """


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        json.dump(_jsonable(payload), out, indent=2, sort_keys=False, allow_nan=False)
        out.write("\n")
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    """Make metrics JSON-safe: non-finite floats become null (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _jsonable(value.item())
    return value


def create_run_dir(base: Path, label: str) -> Path:
    """A new, unique run folder `base/<UTC time>-<label>` (absolute)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    base = base.expanduser().resolve()
    for attempt in range(1000):
        suffix = "" if attempt == 0 else f"-{attempt}"
        run_dir = base / f"{stamp}-{label}{suffix}"
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
            return run_dir
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a run folder under {base}")


class RunRecord:
    """Everything a run reports in results.json, flushed to disk after every change."""

    def __init__(self, run_dir: Path, config: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
        self.run_dir = run_dir
        self.path = run_dir / "results.json"
        self.started = time.time()
        self.data: dict[str, Any] = {"config": dict(config), **extra, "rounds": [],
                                     "status": "running"}
        self.flush()

    def round_entry(self, server_round: int) -> dict[str, Any]:
        """The (possibly new) entry for `server_round`."""
        for entry in self.data["rounds"]:
            if entry["round"] == server_round:
                return entry
        entry: dict[str, Any] = {"round": server_round}
        self.data["rounds"].append(entry)
        self.data["rounds"].sort(key=lambda e: e["round"])
        return entry

    def update_round(self, server_round: int, section: str, metrics: Mapping[str, Any]) -> None:
        """Record `metrics` under `section` for a round and flush."""
        self.round_entry(server_round)[section] = dict(metrics)
        self.flush()

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.flush()

    def finish(self, status: str = "completed") -> None:
        self.data["status"] = status
        self.data["wall-time-s"] = round(time.time() - self.started, 2)
        self.flush()

    def fail(self, reason: str, **details: Any) -> None:
        """Record why the run failed (`error`, plus `details`) and finish with status `failed`."""
        self.data.update({"error": reason, **details})
        self.finish("failed")

    def flush(self) -> None:
        write_json_atomic(self.path, self.data)


def record_failure(output_dir: Path, label: str, config: Mapping[str, Any], reason: str
                   ) -> Path | None:
    """A run folder whose results.json says the run failed before it started (e.g. a config
    error); None when even the output folder cannot be written (the log still says why)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label) or "run"
    try:
        record = RunRecord(create_run_dir(output_dir, safe), config, {})
        record.fail(reason)
    except (OSError, RuntimeError, ValueError):
        return None
    return record.path
