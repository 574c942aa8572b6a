"""An in-process Grid: the server's round loop without Flower's runtime (tests, matrix scripts).

Each node is a `ClientApp` with its own `Context`; `send_and_receive` calls it directly. Nodes
can go offline (they stop replying and leave `get_node_ids`), as a killed SuperNode does.
Hooks: `before_delivery(message)` (tests take nodes offline there), `after_reply(message, reply)`
(an observer, e.g. experiments/robust_bench.py's honest-update auditor), and `skip_types`
(message types not delivered, e.g. "evaluate" when the caller evaluates centrally).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flwr.app import Context, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from fedsnn.core.results import RunFailed

# (message, context) -> reply; a ClientApp is one
Handler = Callable[[Message, Context], Message]


_IDENTITY_LOCK = threading.RLock()


@contextmanager
def server_identity(run_id: int = 1) -> Iterator[None]:
    """Set what Flower's runtime sets for a ServerApp process (Message() needs it).

    TaskIdentity is one per process, so the block holds a process-wide lock: two threads (the
    demo's ANN and SNN twins) would otherwise restore it under each other's feet."""
    with _IDENTITY_LOCK:
        saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = run_id, 0, 1
        try:
            yield
        finally:
            TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


class LocalGrid(Grid):
    """Nodes `1..n`, each served by `handlers[i]` with node config `node_configs[i]`."""

    def __init__(self, handlers: list[Handler], node_configs: list[dict[str, Any]],
                 run_config: Mapping[str, Any]) -> None:
        self.nodes = {i + 1: (handler, Context(run_id=1, node_id=i + 1, node_config=dict(cfg),
                                               state=RecordDict(), run_config=dict(run_config)))
                      for i, (handler, cfg) in enumerate(zip(handlers, node_configs, strict=True))}
        self.offline: set[int] = set()
        self.sent: list[Message] = []
        self.skip_types: frozenset[str] = frozenset()
        self.before_delivery: Callable[[Message], None] = lambda message: None
        self.after_reply: Callable[[Message, Message], None] = lambda message, reply: None

    @classmethod
    def partitioned(cls, handlers: list[Handler], run_config: Mapping[str, Any]) -> LocalGrid:
        """Node i holds partition i of `len(handlers)`, as in Flower's simulation."""
        nodes = len(handlers)
        return cls(handlers, [{"partition-id": i, "num-partitions": nodes} for i in range(nodes)],
                   run_config)

    def get_node_ids(self) -> Iterable[int]:
        """The nodes that are online."""
        return [node for node in self.nodes if node not in self.offline]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None
                         ) -> Iterable[Message]:
        """Deliver each message to its node and collect the replies of the nodes still online."""
        replies = []
        for message in messages:
            if message.metadata.message_type in self.skip_types:
                continue
            self.sent.append(message)
            self.before_delivery(message)
            node = message.metadata.dst_node_id
            if node in self.offline:
                continue
            handler, context = self.nodes[node]
            replies.append(handler(message, context))
            self.after_reply(message, replies[-1])
        return replies

    def set_run(self, run: Any) -> None:
        """Not needed in-process."""

    @property
    def run(self) -> Any:
        """Not needed in-process."""
        raise NotImplementedError

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        """A message to `dst_node_id`."""
        return Message(content, dst_node_id=dst_node_id, message_type=message_type,
                       group_id=group_id, ttl=ttl)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Use send_and_receive."""
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Use send_and_receive."""
        raise NotImplementedError


def federate_in_process(run: Callable[..., object], client_app: Handler,
                        run_config: Mapping[str, Any], nodes: int) -> Path:
    """Run the ServerApp body `run(grid, config, data)` against `nodes` in-process copies of
    `client_app` (partitions 0..nodes-1) and return the run folder it wrote under `output-dir`.

    A run that stops (`RunFailed`, e.g. a spent privacy budget) still returns its folder."""
    from fedsnn.core.config import RunConfig
    from fedsnn.core.data import load_dataset

    grid = LocalGrid.partitioned([client_app] * nodes, run_config)
    config = RunConfig.from_mapping(run_config)
    with server_identity():
        try:
            run(grid, config, load_dataset(config.dataset, config.image_size))
        except RunFailed as stop:
            print(f"  stopped: {stop}", flush=True)
    # the folder the run wrote to: a relative output-dir is taken from the home folder
    (path,) = config.resolved_output_dir().glob("*/results.json")
    return path.parent
