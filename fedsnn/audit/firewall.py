"""The client's privacy firewall: before a node sends its update, it audits the update itself and
allows, hardens or holds it back (issue 30).

The check is the in-line audit run by the client on its own outgoing reply (after its own DP, if
any), scored against its own images: `fedsnn.audit.reply.audit_reply` with the attack the
firewall's threat model grants, `fedsnn.audit.auditor.Auditor` over the node's own train images
(ground truth: the samples it trained on this round) and the audit's nulls and test. Nothing
here attacks or scores a second way. Before it, cheap pre-checks look for an exact give-away
(`precheck`), so the full attack runs only where none is found, on the policy's cadence.

What leaves the node is the decision and an allow-listed reason code
(`fedsnn.core.protocol.FIREWALL_DECISIONS` / `FIREWALL_REASONS`): two metrics on an allowed or
hardened reply, an error reply with `FIREWALL_HOLD_CODE` for a held one. Scores, verdicts and
images stay in the node's log.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, MetricRecord

from attacks import Observation, PublicData, ThreatModel
from attacks.idlg import infer_labels
from attacks.readout import observed_features, readout_distance
from attacks.threat_model import GRADIENT_NEEDS, PUBLIC_DATA, refusal
from clients.node import NodeSetup
from clients.ledgers import NodeLedgers
from clients.privacy import clipped_noisy
from fedsnn.audit.auditor import Auditor
from fedsnn.audit.canary import Reply
from fedsnn.audit.decision import Outcome, Verdict
from fedsnn.audit.observe import known_format, observe_update
from fedsnn.audit.plan import AuditPlan, parse_capabilities
from fedsnn.audit.reply import NotAttacked, audit_reply
from fedsnn.core.config import RunConfig
from fedsnn.core.data import load_dataset
from fedsnn.core.defense_config import DpSgdConfig, LocalDpConfig
from fedsnn.core.models import ModelSpec, build_model
from fedsnn.core.privacy.accounting import replace_one_multiplier
from fedsnn.core.privacy.ledger import GaussianLedger
from fedsnn.core.privacy.units import LOCAL_UNIT
from fedsnn.core.protocol import (FIREWALL_DECISIONS, FIREWALL_KEY, FIREWALL_REASON_KEY,
                                  FIREWALL_REASONS, TRAIN_METRICS)

# reasons that make the firewall act (the others allow the reply)
LEAKY = frozenset({"leak", "fedsgd-batch-1", "label-from-bias", "spike-rate-map"})
RATE_MAP_TOLERANCE = 1e-4  # relative readout distance below which the rate map is given away
LEDGER_NAME = "firewall"  # the node's ledger (`NodeLedgers`) of its hardened releases


def firewall_keys() -> tuple[str, ...]:
    """The run-config keys of the firewall; a node config key of the same name wins."""
    return tuple(f.name.replace("_", "-") for f in dataclasses.fields(RunConfig)
                 if f.name.startswith("firewall"))


@dataclass(frozen=True)
class FirewallPolicy:
    """What the node's firewall does (its run-config keys, `firewall-*`, with the node config's
    values first).

    Attributes:
        mode: "off", "report" (decide and log, send the reply unchanged) or "enforce".
        action: on a leak: "hold", "harden" or "allow" (send it, flagged).
        every: the full check runs every k rounds (rounds 1, 1 + k, ...); pre-checks every round.
        time_budget_s: the attack's time budget per check.
        level: the check's one-sided test level.
        threat_model: what the firewall assumes the server knows (default: the audit's server
            and public data of the same domain).
        harden_steps: noise multipliers z/2^(n-1), ..., z/2, z with z = local-dp-noise-multiplier.
        clipping_norm: harden clips the update to local-dp-clipping-norm.
        noise_multiplier: the most noise harden adds (local-dp-noise-multiplier).
    """

    mode: str = "off"
    action: str = "hold"
    every: int = 50
    time_budget_s: float = 3.0
    level: float = 0.05
    threat_model: ThreatModel = ThreatModel().grant(PUBLIC_DATA)
    harden_steps: int = 4
    clipping_norm: float = 1.0
    noise_multiplier: float = 1.0

    @classmethod
    def from_config(cls, config: RunConfig, node_config: Mapping[str, Any] | None = None
                    ) -> FirewallPolicy:
        """The policy of one node: the run config's `firewall-*` keys, overridden by the node
        config's (a deployment's node operator decides, not the server).

        Raises:
            ConfigError: a bad value (the message names the key).
        """
        own = {key: value for key, value in (node_config or {}).items()
               if key in firewall_keys()}
        if own:
            config = RunConfig.from_mapping({**config.to_dict(), **own})
        withheld = parse_capabilities("firewall-withhold", config.firewall_withhold)
        return cls(config.firewall, config.firewall_action, config.firewall_every,
                   config.firewall_time_budget_s, config.firewall_level,
                   ThreatModel().grant(PUBLIC_DATA).withhold(*withheld),
                   config.firewall_harden_steps, config.local_dp_clipping_norm,
                   config.local_dp_noise_multiplier)

    def checks_round(self, server_round: int) -> bool:
        """Whether the full check runs in this round (the cadence)."""
        return (server_round - 1) % self.every == 0

    def noise_steps(self) -> list[float]:
        """Harden's noise multipliers, smallest first."""
        return [self.noise_multiplier / 2 ** k for k in range(self.harden_steps - 1, -1, -1)]

    def plan(self, config: RunConfig) -> AuditPlan:
        """The audit plan of the check: the strongest attack its threat model grants, within this
        policy's budget, on every round, without a canary: the rate decoder on a spiking FedSGD
        reply when public data is granted (it reads the rate map the head's gradient gives
        away), else the audit's "auto" (iDLG on a FedSGD reply of one sample, the unrolled
        attack on the others)."""
        decoder = (config.is_spiking and config.update_mode == "gradient"
                   and self.threat_model.public_data)
        plan = AuditPlan.from_config(dataclasses.replace(
            config, audit_attack="rate-decoder" if decoder else "auto", audit_rounds="all",
            audit_canary=False, audit_time_budget_s=self.time_budget_s,
            audit_public_data="test-split" if decoder else "none", audit_grant="",
            audit_withhold=""))
        return dataclasses.replace(plan, threat_model=self.threat_model,
                                   public_data="test-split" if self.threat_model.public_data
                                   else "none")


@dataclass(frozen=True)
class Own:
    """What the node checks against: its images, the ids (into them) of the samples it trained
    on this round, and public images of the same domain (the nulls' draws; the attack's public
    data where the threat model grants it)."""

    images: torch.Tensor
    labels: torch.Tensor
    trained: list[int]
    public: torch.Tensor | None = None
    public_labels: torch.Tensor | None = None
    native_size: int | None = None


@dataclass(frozen=True)
class Check:
    """One check of one reply: the reason code and, for the node's log only, what it rests on."""

    reason: str
    detail: str
    seconds: float

    @property
    def leaky(self) -> bool:
        return self.reason in LEAKY


@dataclass(frozen=True)
class Decision:
    """What the firewall decided for a round (the node's log says it all; only `metrics()` or
    the hold's reason code leave the node).

    Attributes:
        decision: "off" (mode off; in report mode the reply is sent unchanged), "allowed",
            "hardened" or "held".
        reason: the reason code (FIREWALL_REASONS).
        detail: the checks' figures, for the node's log.
        seconds: time spent checking.
        would: in report mode, what enforce would have decided.
        noise_multiplier, epsilon: a hardened reply's z and the node's firewall ε since its
            first hardened release (client-level, replace-one).
    """

    decision: str
    reason: str
    detail: str = ""
    seconds: float = 0.0
    would: str = ""
    noise_multiplier: float | None = None
    epsilon: float | None = None

    def metrics(self) -> dict[str, int]:
        """The two codes an allowed or hardened reply carries."""
        return {FIREWALL_KEY: FIREWALL_DECISIONS.index(self.decision),
                FIREWALL_REASON_KEY: FIREWALL_REASONS.index(self.reason)}

    def log_line(self) -> str:
        """One line for the node's log: what it decided and why."""
        head = (f"report mode, would {self.would} ({self.reason})" if self.would
                else f"{self.decision} ({self.reason})")
        noise = ("" if self.noise_multiplier is None else
                 f"; local-DP noise z = {self.noise_multiplier:g}, firewall ε = {self.epsilon:.3g}")
        return f"{head}{noise}; {self.detail} [{self.seconds:.1f} s]"


def precheck(reply: Reply, spec: ModelSpec, own: Own, *, config: RunConfig) -> Check | None:
    """Cheap look for an exact give-away in a reply without the node's own noise: a FedSGD step
    on one sample, a head gradient whose signs give the labels away exactly (iDLG's inference),
    a spiking head whose gradient factors into the trained samples' rate maps. None: nothing
    exact found (the full check decides)."""
    started = time.perf_counter()
    if reply.local_steps != 1:
        return None  # a FedAvg reply is no exact gradient
    if config.update_mode == "gradient" and reply.num_examples == 1:
        return Check("fedsgd-batch-1", "a FedSGD step on one sample", time.perf_counter() - started)
    observation = observe_update("firewall", spec, reply.sent, reply.returned,
                                 lr=config.learning_rate, steps=1, batch_size=reply.num_examples)
    if spec.is_spiking:
        distance = _rate_map_distance(observation, reply, spec, own.images[own.trained])
        if distance < RATE_MAP_TOLERANCE:
            return Check("spike-rate-map", f"the head's gradient gives the rate maps (relative "
                         f"distance {distance:.2g})", time.perf_counter() - started)
    labels = sorted(own.labels[own.trained].tolist())
    if sorted(infer_labels(observation).tolist()) == labels:
        return Check("label-from-bias", f"the head's gradient gives labels {labels}",
                     time.perf_counter() - started)
    return None


def _rate_map_distance(observation: Observation, reply: Reply, spec: ModelSpec,
                       images: torch.Tensor) -> float:
    """How far the rate maps factored out of the head's gradient are from those of the node's
    trained images (relative; inf when the gradient does not factor)."""
    try:
        factors = observed_features(observation)
    except ValueError:
        return math.inf
    victim = build_model(spec)
    victim.load_state_dict({k: v.float() for k, v in reply.sent.items()})
    return readout_distance(victim, images.float(), factors.rows)


def audit_own(reply: Reply, spec: ModelSpec, own: Own, *, config: RunConfig,
              policy: FirewallPolicy) -> Check:
    """The full check: the audit of `reply` by the strongest attack the policy's threat model
    grants, scored against the node's own images beside the audit's nulls."""
    started = time.perf_counter()
    auditor = Auditor(own.images.float(), own.labels.long(),
                      ground_truth=lambda server_round, partition_id: own.trained,
                      public_x=own.public, public_y=own.public_labels,
                      native_size=own.native_size)
    public = (PublicData(own.public, "the dataset's public images") if
              own.public is not None and policy.threat_model.public_data else None)
    try:
        audited = audit_reply(reply, plan=policy.plan(config), config=config, spec=spec,
                              auditor=auditor, native_size=known_format(policy.threat_model,
                                                                        own.native_size),
                              public=public, level=policy.level)
    except NotAttacked as error:
        return Check("not-attacked", str(error), time.perf_counter() - started)
    verdict = audited.verdict
    detail = (f"not scored ({audited.row.get('status')})" if verdict is None
              else verdict.sentence())
    return Check(verdict_reason(verdict), f"{audited.job.settings.attack}: {detail}",
                 time.perf_counter() - started)


def verdict_reason(verdict: Verdict | None) -> str:
    """The reason code of an audit's verdict (no verdict: the attack was not scored)."""
    if verdict is None:
        return "inconclusive"
    return {Outcome.LEAK: "leak", Outcome.INCONCLUSIVE: "inconclusive",
            Outcome.NO_EVIDENCE: "no-evidence"}[verdict.outcome]


def is_noisy(train_config: Mapping[str, Any]) -> bool:
    """Whether the round's config makes the node add its own noise (local DP, DP-SGD)."""
    return LocalDpConfig.asked(train_config) or DpSgdConfig.asked(train_config)


def would_decide(reply: Reply, spec: ModelSpec, own: Own, verdict: Verdict | None, *,
                 config: RunConfig, train_config: Mapping[str, Any],
                 policy: FirewallPolicy = FirewallPolicy(mode="enforce")) -> str:
    """What an enforcing firewall would do with a reply whose audit is already done (the
    playground's: its verdict stands in for the full check), in one line."""
    found = None if is_noisy(train_config) else precheck(reply, spec, own, config=config)
    reason = found.reason if found is not None else verdict_reason(verdict)
    action = policy.action if reason in LEAKY else "allow"
    return f"{action} ({reason})"


def check(reply: Reply, spec: ModelSpec, own: Own, *, config: RunConfig, policy: FirewallPolicy,
          noisy: bool, full: bool) -> Check:
    """Pre-checks first (only on a reply without the node's own noise: noise leaves nothing
    exact), then the full check when `full`."""
    found = None if noisy or refusal("precheck", GRADIENT_NEEDS, policy.threat_model) else \
        precheck(reply, spec, own, config=config)
    if found is not None:
        return found
    if not full:
        return Check("not-checked", "no exact give-away; no full check this round "
                     f"(every {policy.every})", 0.0)
    return audit_own(reply, spec, own, config=config, policy=policy)


def firewall_ledger(ledgers: NodeLedgers, config: RunConfig) -> GaussianLedger:
    """The node's ledger of hardened releases (client-level, replace-one, like local DP's)."""
    ledger = ledgers.ledgers.setdefault(LEDGER_NAME, GaussianLedger(config.dp_accountant,
                                                                    unit=LOCAL_UNIT))
    return ledger  # type: ignore[return-value]


def harden(reply: Reply, spec: ModelSpec, own: Own, *, config: RunConfig,
           policy: FirewallPolicy, ledger: GaussianLedger
           ) -> tuple[dict[str, torch.Tensor] | None, Check, float | None, float | None]:
    """More local-DP noise, step by step, until the full check finds no leak: the hardened
    arrays (None: still leaky at the most noise the policy allows), the last check, its z and
    the node's firewall ε after recording the release in its ledger."""
    keys = list(reply.sent)
    reference = [reply.sent[k].numpy() for k in keys]
    arrays = [reply.returned[k].numpy() for k in keys]
    last = Check("still-leaks", "no step tried", 0.0)
    spent = 0.0
    for z in policy.noise_steps():
        noisy = clipped_noisy(arrays, reference, clipping_norm=policy.clipping_norm,
                              noise_multiplier=z)
        candidate = {k: torch.from_numpy(np.asarray(a)) for k, a in zip(keys, noisy, strict=True)}
        last = check(dataclasses.replace(reply, returned=candidate), spec, own, config=config,
                     policy=policy, noisy=True, full=True)
        spent += last.seconds
        if not last.leaky:
            ledger.record(noise_multipliers=(replace_one_multiplier(z),))
            epsilon = ledger.epsilon(config.dp_delta)
            return candidate, dataclasses.replace(last, seconds=spent), z, epsilon
    return None, Check("still-leaks", f"z = {policy.noise_multiplier:g}: {last.detail}", spent), \
        None, None


def guard(reply: Reply, spec: ModelSpec, own: Own, metrics: Mapping[str, Any], *,
          config: RunConfig, policy: FirewallPolicy, train_config: Mapping[str, Any],
          ledger: GaussianLedger) -> tuple[ArrayRecord | None, MetricRecord, Decision]:
    """The firewall on one outgoing reply: the arrays and metrics to send (None: hold it) and
    the decision.

    Args:
        reply: what the server sent and what the node is about to send back (after its DP).
        spec: the model's spec.
        own: the node's images and the samples it trained on.
        metrics: the reply's metrics as they would leave the node.
        config: the run config (the train config the server sent, as the audit reads it).
        policy: the node's firewall policy.
        train_config: the round's config (whether the node's own noise is already in).
        ledger: the node's firewall ledger (harden's releases are recorded in it).

    Example:
        >>> arrays, metrics, decision = guard(reply, spec, own, metrics, config=config,
        ...                                   policy=policy, train_config={},
        ...                                   ledger=GaussianLedger())  # doctest: +SKIP
        >>> decision.decision, decision.reason  # doctest: +SKIP
        ('held', 'fedsgd-batch-1')
    """
    outgoing = ArrayRecord({k: Array(v.numpy()) for k, v in reply.returned.items()})
    if policy.mode == "off":
        return outgoing, _with(metrics, Decision("off", "none")), Decision("off", "none")
    found = check(reply, spec, own, config=config, policy=policy, noisy=is_noisy(train_config),
                  full=policy.checks_round(reply.server_round))
    if policy.mode == "report":
        would = policy.action if found.leaky else "allow"
        decision = Decision("off", found.reason, found.detail, found.seconds, would=would)
        return outgoing, _with(metrics, Decision("off", "none")), decision
    if not found.leaky or policy.action == "allow":
        decision = Decision("allowed", found.reason, found.detail, found.seconds)
        return outgoing, _with(metrics, decision), decision
    if policy.action == "hold":
        return None, MetricRecord(), Decision("held", found.reason, found.detail, found.seconds)
    hardened, last, z, epsilon = harden(reply, spec, own, config=config, policy=policy,
                                        ledger=ledger)
    seconds = found.seconds + last.seconds
    if hardened is None:
        return None, MetricRecord(), Decision("held", "still-leaks", last.detail, seconds)
    decision = Decision("hardened", found.reason, f"{found.detail}; hardened: {last.detail}",
                        seconds, noise_multiplier=z, epsilon=epsilon)
    arrays = ArrayRecord({k: Array(v.numpy()) for k, v in hardened.items()})
    return arrays, _with(_protected(metrics), decision), decision


def guard_node(node: NodeSetup, sent: ArrayRecord, returned: ArrayRecord,
               metrics: Mapping[str, Any], *, train_config: Mapping[str, Any], ledgers: NodeLedgers,
               server_round: int, node_config: Mapping[str, Any] | None = None
               ) -> tuple[ArrayRecord | None, MetricRecord, Decision]:
    """`guard` for a ClientApp's node: its policy (run config, then node config), its own train
    images and the samples it trained on, the dataset's test split as public images."""
    policy = FirewallPolicy.from_config(node.config, node_config)
    if policy.mode == "off":
        return returned, _with(metrics, Decision("off", "none")), Decision("off", "none")
    dataset = load_dataset(node.config.dataset, node.config.image_size)
    own = Own(node.data.train_x, node.data.train_y, node.training_indices(server_round).tolist(),
              dataset.test_x.float(), dataset.test_y.long(), dataset.native_size)
    reply = Reply(server_round, node.partition_id, sent.to_torch_state_dict(),
                  returned.to_torch_state_dict(), int(metrics["num-examples"]),
                  int(metrics.get("local-steps", 1)))
    return guard(reply, node.spec, own, metrics, config=node.config, policy=policy,
                 train_config=train_config, ledger=firewall_ledger(ledgers, node.config))


def _protected(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A hardened reply's metrics: a raw figure (computed on the data without noise, e.g. the
    train loss) is replaced by NaN, which validation passes and the averages leave out."""
    return {key: math.nan if key in TRAIN_METRICS and TRAIN_METRICS[key].raw
            and not TRAIN_METRICS[key].released else value for key, value in metrics.items()}


def _with(metrics: Mapping[str, Any], decision: Decision) -> MetricRecord:
    return MetricRecord({**dict(metrics), **decision.metrics()})
