"""The honest-but-curious server: it aggregates exactly like the strategy it wraps, and on the side
copies what it observes from client replies and attacks it with gradient inversion.

Invariant: the aggregate is the inner strategy's, unchanged. The wrapper only reads replies (and
copies their arrays) before delegating, because some inner strategies change replies in place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from logging import INFO, WARNING

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedsnn.audit.observe import known_format, local_training, misfit, observe_update
from fedsnn.core.config import RunConfig
from fedsnn.core.data.sources import ImageData
from fedsnn.audit.auditor import Auditor
from fedsnn.audit.plan import AuditPlan
from fedsnn.audit.queue import AuditJob, AuditQueue
from fedsnn.audit.session import complete_audit
from fedsnn.core.models import ModelSpec
from strategies.base import StrategyWrapper
from strategies.rounds import NodesUnavailable


@dataclass(frozen=True)
class Skipped:
    """A reply the curious server chose not to (or could not) attack, and why."""

    server_round: int
    partition_id: int
    reason: str


class CuriousServer(StrategyWrapper):
    """Wrap any Flower strategy; attack selected replies in `queue` while training goes on.

    Args:
        strategy: the strategy that aggregates (FedAvg, FedMedian, Krum, a DP wrapper, ...).
        plan: which rounds and clients are attacked, and with which attack settings.
        queue: where attacks run (worker processes).
        spec: the model's public hyper-parameters.
        config: the run config (the train config the server sends: update mode, optimizer,
            learning rate, epochs, batch size, seed), read as far as `plan.threat_model` grants.
        native_size: the native image side of the dataset the run config names
            (`ImageData.native_size`), handed to attacks when the threat model grants the data
            format.
    """

    label = "curious server (in-line gradient inversion)"

    def __init__(self, strategy: Strategy, *, plan: AuditPlan, queue: AuditQueue, spec: ModelSpec,
                 config: RunConfig, native_size: int | None = None) -> None:
        super().__init__(strategy)
        self.plan = plan
        self.queue = queue
        self.spec = spec
        self.config = config
        self.native_size = known_format(plan.threat_model, native_size)
        self.skipped: list[Skipped] = []
        self.submitted = 0
        self.nodes_seen = 0  # the most nodes online in a round: a simulation's partition count

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Delegate (the inner strategy waits for its nodes), then count the nodes online: what
        the simulation knows of its partitions."""
        messages = list(super().configure_train(server_round, arrays, config, grid))
        try:
            self.nodes_seen = max(self.nodes_seen, len(list(grid.get_node_ids())))
        except NodesUnavailable:  # the stage's deadline passed meanwhile: count next round
            pass
        return messages

    def describe(self) -> str:
        rounds = "all" if self.plan.rounds is None else sorted(self.plan.rounds)
        public = "" if self.queue.public is None else f"; public data: {self.queue.public.source}"
        return (f"{self.label}: {self.plan.attack_name} on <= {self.plan.max_clients} "
                f"clients in rounds {rounds}{public}; the server {self.plan.threat_model.describe()}")

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Observe (copy) the selected replies, submit attacks, then delegate unchanged."""
        replies = list(replies)
        if self.plan.attacks_round(server_round) and self.round_arrays is not None:
            self._observe(server_round, replies)
        return self.strategy.aggregate_train(server_round, replies)

    def _observe(self, server_round: int, replies: list[Message]) -> None:
        candidates = []
        for msg in replies:
            if msg.has_error() or "metrics" not in msg.content:
                continue
            metrics = msg.content["metrics"]
            candidates.append((int(metrics.get("partition-id", -1)), msg))
        candidates.sort(key=lambda item: item[0])
        sent = self.round_arrays.to_torch_state_dict()
        # submitted together: DLG/iDLG/GRNN run vectorized (attacks/batched.py), the unrolled
        # attack stacks the round's replies of one shape (attacks/unrolled_batched.py)
        jobs: list[AuditJob] = []
        for partition_id, msg in candidates[:self.plan.max_clients]:
            self._observe_one(server_round, partition_id, msg, sent, jobs)
        self.queue.submit_many(jobs)

    def _observe_one(self, server_round: int, partition_id: int, msg: Message,
                     sent: dict, jobs: list[AuditJob]) -> None:
        metrics = msg.content["metrics"]
        batch = int(metrics.get("num-examples", 0))
        steps = int(metrics.get("local-steps", 1))
        if batch > self.plan.max_batch:
            self._skip(server_round, partition_id,
                       f"update computed on {batch} samples > audit-max-batch {self.plan.max_batch}")
            return
        training = local_training(self.config, self.plan.threat_model, server_round=server_round,
                                  partition_id=partition_id, num_examples=batch)
        settings = self.plan.choose(self.config.update_mode, batch,
                                    classes=self.spec.num_classes)
        problem = misfit(training, batch, steps)
        if isinstance(settings, str) or problem is not None:
            self._skip(server_round, partition_id, problem or str(settings))
            return
        try:
            arrays = next(iter(msg.content.array_records.values()))
            observation = observe_update(
                f"round-{server_round}/partition-{partition_id}", self.spec, sent,
                arrays.to_torch_state_dict(), lr=self.config.learning_rate, steps=steps,
                batch_size=batch, training=training, native_size=self.native_size)
        except (KeyError, ValueError, StopIteration) as error:
            self._skip(server_round, partition_id, f"unusable reply: {error}")
            return
        jobs.append(AuditJob(server_round, partition_id, observation, settings))
        self.submitted += 1
        log(INFO, "curious server: round %d, partition %d: %s attack submitted (batch %d, %d "
            "local step%s)", server_round, partition_id, settings.attack, batch, steps,
            "" if steps == 1 else "s")

    def finish(self, run_dir: Path, auditor: Auditor, judge: dict[str, Any] | None = None
               ) -> dict[str, object]:
        """Wait for the outstanding attacks (bounded), score them, write audit.json and the
        report; returns the audit summary."""
        skipped = [{"round": s.server_round, "partition-id": s.partition_id, "reason": s.reason}
                   for s in self.skipped]
        return complete_audit(run_dir, queue=self.queue, plan=self.plan, skipped=skipped,
                              auditor=auditor, judge=judge)

    def _skip(self, server_round: int, partition_id: int, reason: str) -> None:
        self.skipped.append(Skipped(server_round, partition_id, reason))
        log(WARNING, "curious server: round %d, partition %d not attacked: %s", server_round,
            partition_id, reason)


def attach_audit(strategy: Strategy, config: RunConfig, spec: ModelSpec,
                 data: ImageData | None = None) -> CuriousServer:
    """Wrap `strategy` (outermost, so it sees replies as clients sent them) with the curious
    server configured by the `audit-*` keys. `data`: the run's dataset, whose test split is the
    server's public data when `audit-public-data` grants it."""
    plan = AuditPlan.from_config(config)
    public = plan.public(data) if data is not None else None
    if plan.public_data != "none" and public is None:
        raise ValueError("audit-public-data is granted but no dataset was given to the audit")
    return CuriousServer(strategy, plan=plan, queue=AuditQueue(plan.workers, public), spec=spec,
                         config=config, native_size=None if data is None else data.native_size)
