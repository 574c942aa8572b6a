"""The server's round loop: `Strategy.start` made to survive edge clients.

Same cycle as Flower's `Strategy.start` (train -> aggregate -> client evaluation -> central
evaluation), with what a deployment needs on top:

- every wait is bounded: at most `node_wait_timeout` seconds for enough nodes to connect before
  a stage (Flower's node sampling would wait forever) and `round_timeout` seconds for replies;
- a round counts when at least `min_train_replies` replies came back without error; with
  fewer, the run stops with `RunStopped`, whose message says what happened;
- a round can start later than 1 (resuming from a checkpoint), and `on_round_end` is called
  after every completed round (the ServerApp writes its checkpoint there);
- `report(round, section, metrics)` receives what happened in each round (participation,
  aggregated train and client-evaluation metrics) as it happens.

Messages carry a time-to-live of `round_timeout`, so a node that comes back after a crash does
not work on a stale round: it simply joins the next one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from logging import INFO, WARNING
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy

from fedsnn.core.protocol import FIREWALL_DECISIONS, FIREWALL_HOLD_CODE, FIREWALL_KEY

Report = Callable[[int, str, dict[str, Any]], None]


class RunStopped(RuntimeError):
    """The run cannot go on (too few nodes or replies); the message says why."""


class NodesUnavailable(RuntimeError):
    """Raised inside a stage when enough nodes did not connect in time."""


@dataclass(frozen=True)
class RoundPolicy:
    """How long to wait, and how many replies make a round.

    Args:
        round_timeout: seconds to wait for the replies of one stage (train or evaluate).
        node_wait_timeout: seconds to wait for the strategy's minimum of connected nodes.
        min_train_replies: replies without error a training round needs to count.
    """

    round_timeout: float = 600.0
    node_wait_timeout: float = 300.0
    min_train_replies: int = 1


class BoundedGrid(Grid):
    """A Grid whose `get_node_ids` raises `NodesUnavailable` after a deadline.

    Flower's strategies sample nodes by polling `get_node_ids` until enough are connected,
    without a time limit; handing them this grid bounds that wait.
    """

    def __init__(self, grid: Grid, deadline: float) -> None:
        self.grid = grid
        self.deadline = deadline

    def get_node_ids(self) -> Iterable[int]:
        """The connected nodes, or `NodesUnavailable` once the deadline has passed."""
        if time.monotonic() > self.deadline:
            raise NodesUnavailable(f"{len(list(self.grid.get_node_ids()))} node(s) connected")
        return self.grid.get_node_ids()

    def set_run(self, run: Any) -> None:
        """Delegate."""
        self.grid.set_run(run)

    @property
    def run(self) -> Any:
        """Delegate."""
        return self.grid.run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        """Delegate."""
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Delegate."""
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Delegate."""
        return self.grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None
                         ) -> Iterable[Message]:
        """Delegate."""
        return self.grid.send_and_receive(messages, timeout=timeout)


def run_rounds(strategy: Strategy, grid: Grid, *, initial_arrays: ArrayRecord, num_rounds: int,
               policy: RoundPolicy, first_round: int = 1,
               train_config: ConfigRecord | None = None,
               evaluate_config: ConfigRecord | None = None,
               evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
               report: Report | None = None,
               on_round_end: Callable[[int, ArrayRecord], None] | None = None) -> Result:
    """Run rounds `first_round`..`num_rounds` and return Flower's `Result`.

    Central evaluation (`evaluate_fn`) runs on the initial arrays only when starting at round 1
    (a resumed run already has it), and after every round.

    Raises:
        RunStopped: a stage found too few nodes or a training round too few replies; the rounds
            before it are complete (and were passed to `on_round_end`).

    Example:
        >>> result = run_rounds(strategy, grid, initial_arrays=arrays, num_rounds=2,
        ...                     policy=RoundPolicy(round_timeout=60))  # doctest: +SKIP
    """
    report = report or (lambda *_: None)
    result = Result(arrays=initial_arrays)
    if evaluate_fn is not None and first_round == 1:
        _central(evaluate_fn, 0, initial_arrays, result)
    arrays = initial_arrays
    for server_round in range(first_round, num_rounds + 1):
        log(INFO, "")
        log(INFO, "[ROUND %s/%s]", server_round, num_rounds)
        replies = _stage(strategy.configure_train, server_round, arrays,
                         train_config or ConfigRecord(), grid, policy, "train")
        if replies is None:
            raise RunStopped(
                f"round {server_round}: fewer nodes than the strategy needs were connected after "
                f"waiting {policy.node_wait_timeout:g} s (node-wait-timeout); stopping")
        sent, received = replies
        ok = [msg for msg in received if not msg.has_error()]
        participation = _participation(sent, received)
        if len(ok) < policy.min_train_replies:
            report(server_round, "participation", participation | {"aggregated": False})
            raise RunStopped(
                f"round {server_round}: {len(ok)} of {len(sent)} nodes replied without error "
                f"({participation['failed']} failed: nodes "
                f"{[f['node-id'] for f in participation['failed-nodes']]}, "
                f"{participation['no-reply']} sent nothing within "
                f"round-timeout={policy.round_timeout:g} s: nodes "
                f"{participation['no-reply-node-ids']}); min-train-replies is "
                f"{policy.min_train_replies}; stopping")
        if len(ok) < len(sent):
            log(WARNING, "round %d: continuing with %d of %d replies (failed: %s; no reply: %s)",
                server_round, len(ok), len(sent), participation["failed-nodes"],
                participation["no-reply-node-ids"])
        new_arrays, train_metrics = strategy.aggregate_train(server_round, received)
        report(server_round, "participation", participation | {"aggregated": new_arrays is not None})
        if new_arrays is not None:
            arrays = result.arrays = new_arrays
        if train_metrics is not None:
            result.train_metrics_clientapp[server_round] = train_metrics
            report(server_round, "train", dict(train_metrics))

        evaluation = _stage(strategy.configure_evaluate, server_round, arrays,
                            evaluate_config or ConfigRecord(), grid, policy, "evaluate")
        if evaluation is None:
            log(WARNING, "round %d: too few nodes for client evaluation; skipped", server_round)
        else:
            eval_metrics = strategy.aggregate_evaluate(server_round, evaluation[1])
            if eval_metrics is not None:
                result.evaluate_metrics_clientapp[server_round] = eval_metrics
                report(server_round, "client-eval", dict(eval_metrics))
        if evaluate_fn is not None:
            _central(evaluate_fn, server_round, arrays, result)
        if on_round_end is not None:
            on_round_end(server_round, arrays)
    return result


def _participation(sent: list[Message], received: list[Message]) -> dict[str, Any]:
    """Who was asked, who replied, and which nodes failed (with the error they reported) or
    sent nothing, for results.json."""
    failed = [{"node-id": msg.metadata.src_node_id, "error": _error_text(msg)}
              for msg in received if msg.has_error()]
    answered = {msg.metadata.src_node_id for msg in received}
    silent = sorted({msg.metadata.dst_node_id for msg in sent} - answered)
    return {"sampled": len(sent), "replied": len(received) - len(failed), "failed": len(failed),
            "no-reply": len(sent) - len(received), "failed-nodes": failed,
            "no-reply-node-ids": silent, "firewall": firewall_counts(received)}


def firewall_counts(received: list[Message]) -> dict[str, int]:
    """How many replies the nodes' firewalls allowed, hardened and held (`off`: no firewall or
    report mode), from the decision codes alone (`fedsnn.core.protocol`)."""
    counts = dict.fromkeys(FIREWALL_DECISIONS, 0)
    for msg in received:
        if msg.has_error():
            if msg.error.code == FIREWALL_HOLD_CODE:
                counts["held"] += 1
            continue
        code = next(iter(msg.content.metric_records.values()), {}).get(FIREWALL_KEY, 0)
        if isinstance(code, int) and 0 <= code < len(FIREWALL_DECISIONS):
            counts[FIREWALL_DECISIONS[code]] += 1
    return counts


def _error_text(msg: Message) -> str:
    """The first line of a failed reply's error, short enough for results.json."""
    reason = str(getattr(msg.error, "reason", "") or "").strip()
    line = reason.splitlines()[-1] if reason else ""
    return f"code {msg.error.code}: {line[:300]}"


def _stage(configure: Callable[[int, ArrayRecord, ConfigRecord, Grid], Iterable[Message]],
           server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid,
           policy: RoundPolicy, name: str) -> tuple[list[Message], list[Message]] | None:
    """Configure, send and collect one stage: (messages sent, replies), or None when enough
    nodes did not connect in time."""
    bounded = BoundedGrid(grid, time.monotonic() + policy.node_wait_timeout)
    try:
        messages = list(configure(server_round, arrays, config, bounded))
    except NodesUnavailable as error:
        log(WARNING, "round %d %s: waited %g s for nodes; %s", server_round, name,
            policy.node_wait_timeout, error)
        return None
    for message in messages:
        message.metadata.ttl = policy.round_timeout
    started = time.monotonic()
    replies = list(grid.send_and_receive(messages, timeout=policy.round_timeout))
    log(INFO, "round %d %s: %d of %d replies in %.1f s", server_round, name, len(replies),
        len(messages), time.monotonic() - started)
    return messages, replies


def _central(evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None], server_round: int,
             arrays: ArrayRecord, result: Result) -> None:
    metrics = evaluate_fn(server_round, arrays)
    if metrics is not None:
        result.evaluate_metrics_serverapp[server_round] = metrics
