"""A node's privacy ledgers, opened once per train message and saved after it.

`NodeLedgers` holds every ledger of the node (`fedsnn.core.privacy.ledger`: one interface, one
registry) and its secret seed: from `Context.state` within a run, else from the node's ledger
file — node config `privacy-ledger`, or, without one, the file the ServerApp names under the run
folder (`partition-<id>.json`, copied forward on resume). A ledger that starts after round 1
without the server vouching that nothing was spent before marks every ε after it
`dp-epsilon-understated` (never a silent reset). The ledger belongs to the node's data, not to a
run: give a deployed node its own `privacy-ledger`, or the server can reset it by naming a fresh
folder.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Context

from fedsnn.core.privacy.ledger import Ledger, LedgerError
from fedsnn.core.privacy.registry import ledger_from_state
from fedsnn.core.protocol import NODE_LEDGER_DIR, NODE_LEDGERS_COMPLETE

STATE_KEY = "fedsnn-privacy"   # the ConfigRecord in Context.state holding this node's ledgers
LEDGER_KEY = "privacy-ledger"  # node config: the JSON file the node's ledgers persist in
LEDGER_FORMAT = 2              # the file's format (1: flat release counts, before issue 27)
Config = Mapping[str, Any]     # a round's config (a ConfigRecord, or a dict in tests)


@dataclass
class NodeLedgers:
    """Every privacy ledger of one node, by defense name, and its secret seed.

    Attributes:
        ledgers: "local-dp" / "dp-sgd" / "spike-dp" -> its `Ledger`.
        secret: the node's secret seed (`client-randomness = "secret"`), drawn on first use.
        understated_from: the round from which this node's ε may be understated (0: never).
        path: the file they persist in (None: `Context.state` only).
    """

    ledgers: dict[str, Ledger] = field(default_factory=dict)
    secret: int | None = None
    understated_from: int = 0
    path: Path | None = None

    @classmethod
    def open(cls, context: Context, config: Config, partition_id: int | None = None
             ) -> NodeLedgers:
        """This node's ledgers for a train message: from its `Context.state` within a run, else
        from its ledger file (`ledger_path`); fresh ones at round > 1 are marked understated
        unless the server's ledger folder is complete.

        Raises:
            LedgerError: the file exists but cannot be read (a ledger must not reset silently).
        """
        state = context.state.get(STATE_KEY)
        if isinstance(state, ConfigRecord) and "ledgers" in state:
            return cls.from_json(str(state["ledgers"]), path=_path(state.get("path")))
        own = context.node_config.get(LEDGER_KEY)
        path = ledger_path(own, config, partition_id)
        if path is not None and path.is_file():
            try:
                return cls.from_json(path.read_text(), path=path)
            except (OSError, ValueError) as error:
                raise LedgerError(f"privacy-ledger {path}: cannot read it ({error}); fix or "
                                  "remove it knowingly (removing it restarts this node's ε at "
                                  "zero)") from None
        server_round = int(config.get("server-round", 1))
        vouched = own is None and path is not None and bool(config.get(NODE_LEDGERS_COMPLETE))
        return cls(path=path, understated_from=server_round if server_round > 1 and not vouched
                   else 0)

    @classmethod
    def from_json(cls, text: str, path: Path | None = None) -> NodeLedgers:
        saved = json.loads(text)
        found = saved.get("format", 1) if isinstance(saved, dict) else None
        if found != LEDGER_FORMAT:
            raise LedgerError(f"ledger format {found}, this version reads format "
                              f"{LEDGER_FORMAT} (format 1 kept release counts without their noise)")
        return cls({name: ledger_from_state(state) for name, state in saved["ledgers"].items()},
                   saved.get("node-secret"), int(saved.get("understated-from", 0)), path)

    def to_json(self) -> str:
        return json.dumps({"format": LEDGER_FORMAT, "node-secret": self.secret,
                           "understated-from": self.understated_from,
                           "ledgers": {name: ledger.state_dict()
                                       for name, ledger in self.ledgers.items()}})

    def save(self, context: Context) -> None:
        """Keep the ledgers in `Context.state` and write their file (atomically)."""
        text = self.to_json()
        context.state[STATE_KEY] = ConfigRecord(
            {"ledgers": text, **({"path": str(self.path)} if self.path else {})})
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, self.path)

    def node_secret(self) -> int:
        """This node's secret seed: drawn from `secrets` on first use and kept with its ledgers,
        so its draws differ from anything the server can derive yet stay consistent."""
        if self.secret is None:
            self.secret = secrets.randbits(62)
        return self.secret


def _path(value: Any) -> Path | None:
    return Path(str(value)) if value else None


def ledger_path(own: Any, config: Config, partition_id: int | None) -> Path | None:
    """The node's ledger file: its own `privacy-ledger` (node config) first; else, for a
    partition of the run, `partition-<id>.json` in the folder the ServerApp names."""
    if own:
        return Path(str(own))
    folder = config.get(NODE_LEDGER_DIR)
    if folder and partition_id is not None and partition_id >= 0:
        return Path(str(folder)) / f"partition-{partition_id}.json"
    return None
