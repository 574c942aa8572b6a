"""The honest-but-curious server: it aggregates exactly like the strategy it wraps, and on the side
copies what it observes from client replies and attacks it with gradient inversion.

Invariant: the aggregate is the inner strategy's, unchanged. The wrapper only reads replies (and
copies their arrays) before delegating, because some inner strategies change replies in place.
"""

from __future__ import annotations

from collections.abc import Iterable
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from logging import INFO, WARNING

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, Strategy

from fedsnn.audit.canary import Reply, make_canary
from fedsnn.audit.reply import observe_reply
from fedsnn.core.config import ConfigError, RunConfig
from fedsnn.core.data.sources import ImageData
from fedsnn.audit.auditor import Auditor
from fedsnn.audit.plan import AuditPlan
from fedsnn.audit.queue import AuditJob, AuditQueue
from fedsnn.audit.session import complete_audit
from fedsnn.core.models import ModelSpec, build_model
from fedsnn.core.protocol import CLIENT_DP_FLAG
from fedsnn.core.training import evaluate
from strategies.base import StrategyWrapper
from strategies.dp_stack import DEFENSE_WRAPPERS
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
        canary_images: images the server holds (the test split) and their labels, for the
            canary of each audited round (None: no canary).
    """

    label = "curious server (in-line gradient inversion)"

    def __init__(self, strategy: Strategy, *, plan: AuditPlan, queue: AuditQueue, spec: ModelSpec,
                 config: RunConfig, native_size: int | None = None,
                 canary_images: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        super().__init__(strategy)
        self.plan = plan
        self.queue = queue
        self.spec = spec
        self.config = config
        self.native_size = native_size  # handed on only as far as the threat model grants
        self.canary_images = canary_images
        self.train_config: dict[str, Any] = {"lr": config.learning_rate}
        self.skipped: list[Skipped] = []
        self.submitted = 0
        self.nodes_seen = 0  # the most nodes online in a round: a simulation's partition count

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Delegate (the inner strategy waits for its nodes), then count the nodes online: what
        the simulation knows of its partitions."""
        messages = list(super().configure_train(server_round, arrays, config, grid))
        if messages:  # what the clients are asked to do: the canary trains the same way
            self.train_config = dict(messages[0].content["config"])
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
        self._canary(server_round, sent, jobs)
        self.queue.submit_many(jobs)

    def _observe_one(self, server_round: int, partition_id: int, msg: Message,
                     sent: dict, jobs: list[AuditJob]) -> None:
        metrics = msg.content["metrics"]
        try:
            arrays = next(iter(msg.content.array_records.values())).to_torch_state_dict()
        except StopIteration:
            self._skip(server_round, partition_id, "unusable reply: no arrays")
            return
        reply = Reply(server_round, partition_id, sent, arrays, int(metrics.get("num-examples", 0)),
                      int(metrics.get("local-steps", 1)))
        job = observe_reply(reply, plan=self.plan, config=self.config, spec=self.spec,
                            native_size=self.native_size)
        if isinstance(job, str):
            self._skip(server_round, partition_id, job)
            return
        jobs.append(job)
        self.submitted += 1
        log(INFO, "curious server: round %d, partition %d: %s attack submitted (batch %d, %d "
            "local step%s)", server_round, partition_id, job.settings.attack, reply.num_examples,
            reply.local_steps, "" if reply.local_steps == 1 else "s")

    def _canary(self, server_round: int, sent: dict, jobs: list[AuditJob]) -> None:
        """The round's positive control (`fedsnn.audit.canary`), as large as the first attacked
        reply, attacked with the same settings beside the clients' replies; and the "what to
        change" canaries, made the same way under each of `audit-canary-defenses`."""
        if not self.plan.canary or self.canary_images is None or not jobs:
            return
        size = jobs[0].observation.batch_size
        try:
            defended = canary_defenses(self.config, self.train_config)
        except Exception as error:  # noqa: BLE001 - a canary never stops training
            log(WARNING, "curious server: round %d: no defense canaries: %s", server_round, error)
            defended = []
        for defense, config, train_config in [("", self.config, self.train_config), *defended]:
            job = self._canary_job(server_round, sent, size, config, train_config, defense)
            if job is not None:
                jobs.append(job)

    def _canary_job(self, server_round: int, sent: dict, size: int, config: RunConfig,
                    train_config: dict[str, Any], defense: str) -> AuditJob | None:
        public_x, public_y = self.canary_images  # type: ignore[misc]
        what = f"canary{' under ' + defense if defense else ''}"
        try:
            reply, ids = make_canary(config, self.spec, sent, train_config, public_x, public_y,
                                     images=size, server_round=server_round)
        except (ValueError, RuntimeError) as error:
            log(WARNING, "curious server: round %d: no %s: %s", server_round, what, error)
            return None
        job = observe_reply(reply, plan=self.plan, config=config, spec=self.spec,
                            native_size=self.native_size, canary_ids=ids, defense=defense)
        if isinstance(job, str):
            log(WARNING, "curious server: round %d: %s not attacked: %s", server_round, what, job)
            return None
        log(INFO, "curious server: round %d: %s of %d public images submitted", server_round,
            what, len(ids))
        return replace(job, accuracy=canary_accuracy(self.spec, reply.returned, public_x,
                                                     public_y, ids))

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


# audit-canary-defenses: the client-side defenses a "what to change" canary can be made under,
# with the run-config key that takes its ε
CANARY_DEFENSES = {"local-dp": "local_dp_target_epsilon", "dp-sgd": "dp_sgd_target_epsilon"}


def parse_canary_defenses(text: str) -> list[tuple[str, float]]:
    """'local-dp:8, dp-sgd:4' -> [('local-dp', 8.0), ('dp-sgd', 4.0)].

    Raises:
        ConfigError: an unknown defense or an ε that is not a positive number.
    """
    pairs = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, epsilon = part.partition(":")
        try:
            value = float(epsilon)
        except ValueError:
            value = math.nan
        if name.strip() not in CANARY_DEFENSES or not value > 0:
            raise ConfigError(f"audit-canary-defenses: expected 'defense:epsilon' pairs with a "
                              f"defense in {sorted(CANARY_DEFENSES)} and epsilon > 0, got {part!r}")
        pairs.append((name.strip(), value))
    return pairs


def canary_defenses(config: RunConfig, train_config: dict[str, Any]
                    ) -> list[tuple[str, RunConfig, dict[str, Any]]]:
    """Per `audit-canary-defenses` entry: its label, the run config with only that defense, and
    the train config a client would get under it (the defense wrapper's own settings)."""
    out = []
    for name, epsilon in parse_canary_defenses(config.audit_canary_defenses):
        defended = replace(config, defenses=name, **{CANARY_DEFENSES[name]: epsilon})
        wrapper = DEFENSE_WRAPPERS[name](FedAvg(), defended)
        settings = getattr(wrapper, "settings", {})
        out.append((f"{name} ε={epsilon:g}", defended,
                    {**train_config, **settings, CLIENT_DP_FLAG: 1}))
    return out


def canary_accuracy(spec: ModelSpec, state: dict, images: torch.Tensor, labels: torch.Tensor,
                    exclude: list[int]) -> float:
    """The test accuracy of a canary's locally trained model, on the public images it was not
    trained on (what a defense costs one client's update)."""
    keep = torch.ones(len(images), dtype=torch.bool)
    keep[torch.tensor(exclude, dtype=torch.long)] = False
    model = build_model(spec)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return evaluate(model, images[keep], labels[keep])[1]


def attach_audit(strategy: Strategy, config: RunConfig, spec: ModelSpec,
                 data: ImageData | None = None) -> CuriousServer:
    """Wrap `strategy` (outermost, so it sees replies as clients sent them) with the curious
    server configured by the `audit-*` keys. `data`: the run's dataset, whose test split is the
    server's public data when `audit-public-data` grants it."""
    plan = AuditPlan.from_config(config)
    try:  # refused before training starts: an unknown defense, an ε no noise calibrates to
        canary_defenses(config, {})
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - e.g. dp-accounting's calibration
        raise ConfigError(f"audit-canary-defenses: {type(error).__name__}: {error}") from None
    public = plan.public(data) if data is not None else None
    if plan.public_data != "none" and public is None:
        raise ValueError("audit-public-data is granted but no dataset was given to the audit")
    return CuriousServer(strategy, plan=plan, queue=AuditQueue(plan.workers, public), spec=spec,
                         config=config, native_size=None if data is None else data.native_size,
                         canary_images=None if data is None else (data.test_x, data.test_y))
