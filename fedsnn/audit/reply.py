"""From a reply to a score, in one place: observe it under the threat model, attack it, score it
beside its nulls and decide (issue 25: the curious server, the demo and the grid all go this way).

- `observe_reply` is the one builder of an attack job from what the server holds of a reply (the
  client's local training as the threat model grants it, the attack the plan chooses, the
  observation itself), or the reason it is not attacked;
- `audit_reply` runs the whole path for one reply (and its canary) at once: observe, attack,
  score (`Auditor.score`, with the nulls), decide (`fedsnn.audit.decision.Verdict`).

The curious server runs the same two halves around its queue: `observe_reply` when a reply
arrives, `fedsnn.audit.session.score_finished` when the attacks are done.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from attacks import AttackSettings, Observation, PublicData, Reconstruction
from fedsnn.audit.auditor import Auditor
from fedsnn.audit.canary import Reply
from fedsnn.audit.decision import LEVEL, Verdict
from fedsnn.audit.observe import known_format, local_training, misfit, observe_update
from fedsnn.audit.plan import AuditPlan
from fedsnn.audit.queue import AuditJob, run_attacks
from fedsnn.audit.session import score_finished
from fedsnn.audit.verdict import scored_rows, verdict_for
from fedsnn.core.config import RunConfig
from fedsnn.core.models import ModelSpec


def observe_reply(reply: Reply, *, plan: AuditPlan, config: RunConfig, spec: ModelSpec,
                  native_size: int | None = None, canary_ids: Sequence[int] = (),
                  target_id: str | None = None, defense: str = "") -> AuditJob | str:
    """The attack job for one reply, or one line saying why it is not attacked.

    Args:
        reply: what the server sent and got back, with the reply's metrics.
        plan: the audit plan (threat model, attacks, limits).
        config: the run config: the train config the server sent (update mode, optimizer, lr,
            epochs, batch size, seed), read as far as the threat model grants it.
        spec: the model's public hyper-parameters.
        native_size: the dataset's native image side (given to the attack only when the threat
            model grants the data format).
        canary_ids: for a canary, the public ids of its images (`fedsnn.audit.canary`).
        defense: for a "what to change" canary, the client-side defense it was made under.
    """
    batch, steps = reply.num_examples, reply.local_steps
    if batch > plan.max_batch:
        return f"update computed on {batch} samples > audit-max-batch {plan.max_batch}"
    training = local_training(config, plan.threat_model, server_round=reply.server_round,
                              partition_id=reply.partition_id, num_examples=batch)
    settings = plan.choose(config.update_mode, batch, classes=spec.num_classes,
                           optimizer=config.optimizer, spiking=spec.is_spiking)
    problem = misfit(training, batch, steps)
    if isinstance(settings, str) or problem is not None:
        return problem or str(settings)
    name = target_id or (f"canary{'-' + defense if defense else ''}" if canary_ids
                         else f"partition-{reply.partition_id}")
    try:
        observation = observe_update(
            f"round-{reply.server_round}/{name}", spec, reply.sent, reply.returned,
            lr=config.learning_rate, steps=steps, batch_size=batch, training=training,
            native_size=known_format(plan.threat_model, native_size))
    except (KeyError, ValueError) as error:
        return f"unusable reply: {error}"
    return AuditJob(reply.server_round, reply.partition_id, observation, settings,
                    canary_ids=tuple(canary_ids), defense=defense)


@dataclass(frozen=True)
class AuditedReply:
    """One reply through the whole path: its job, the attack's output, its audit.json row
    (each metric beside each null, the tests, its own `verdict`), and the verdict object."""

    job: AuditJob
    reconstruction: Reconstruction
    row: dict[str, Any]
    verdict: Verdict | None
    canary_row: dict[str, Any] | None = None


class NotAttacked(ValueError):
    """The reply is not attacked (the message says why: the plan, the threat model, a misfit)."""


Attack = Callable[[list[Observation], AttackSettings, "PublicData | None"], list[Reconstruction]]


def audit_reply(reply: Reply, *, plan: AuditPlan, config: RunConfig, spec: ModelSpec,
                auditor: Auditor, native_size: int | None = None,
                canary: tuple[Reply, Sequence[int]] | None = None,
                public: PublicData | None = None, attack: Attack = run_attacks,
                level: float = LEVEL) -> AuditedReply:
    """Observe, attack, score and decide one reply (with its canary, attacked alongside, as
    the positive control).

    Args:
        reply, plan, config, spec, native_size: as `observe_reply`.
        auditor: the scorer, with the reply's ground truth and the nulls' sources.
        canary: the round's canary reply and its public ids (`fedsnn.audit.canary.make_canary`);
            None: no positive control (the verdict says the power is unknown).
        public: the public images the threat model grants the attack.
        attack: runs the attack on observations (default: the queue workers' vectorized
            `run_attacks`; a live page passes `attacks.invert` under `attacks.progress.watch`).
        level: the verdict's one-sided test level (the client's firewall sets its own).

    Example:
        >>> audited = audit_reply(reply, plan=plan, config=config, spec=spec,
        ...                       auditor=auditor)  # doctest: +SKIP
        >>> audited.verdict.outcome.value  # doctest: +SKIP
        'leak'

    Raises:
        NotAttacked: the plan or the threat model does not attack this reply.
    """
    job = observe_reply(reply, plan=plan, config=config, spec=spec, native_size=native_size)
    if isinstance(job, str):
        raise NotAttacked(job)
    jobs = [job]
    if canary is not None:
        canary_job = observe_reply(canary[0], plan=plan, config=config, spec=spec,
                                   native_size=native_size, canary_ids=canary[1])
        if isinstance(canary_job, AuditJob):
            jobs.append(canary_job)
    reconstructions = [reconstruction for settings in dict.fromkeys(j.settings for j in jobs)
                       for reconstruction in attack(
                           [j.observation for j in jobs if j.settings == settings], settings,
                           public)]
    jobs = [j for settings in dict.fromkeys(j.settings for j in jobs) for j in jobs
            if j.settings == settings]
    rows = score_finished(auditor, list(zip(jobs, reconstructions, strict=True)))
    verdict = verdict_for(scored_rows(rows[:1]), scored_rows(rows[1:], canary=True), level=level)
    return AuditedReply(job, reconstructions[0], rows[0], verdict,
                        rows[1] if len(rows) > 1 else None)
