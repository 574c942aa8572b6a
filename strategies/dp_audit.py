"""`dp-audit = true`: audit every DP claim of a run by attack, in the same run.

For each DP defense in the strategy stack, canaries are planted where the mechanism's
neighbouring relation puts one unit of privacy, with the run's own settings and the mechanism's
own code, each canary in or out with probability ½ (secret, `fedsnn.core.privacy.canaries`):

- local DP (client, replace-one): m canary clients whose update is ±10C along a known direction go
  through the node's own `clients.privacy.release`, once per round of the run;
- central DP (client, replace-one): the same canary clients are one round's m replies to the
  wrapper's release (Flower's DP wrapper with this project's safe clipping and secret noise);
- DP-SGD (sample, add/remove-one): white-box Dirac gradient canaries in Opacus' per-sample
  gradients, on the final global model and partition 0's data, for the steps one client took
  (`fedsnn.core.privacy.dpsgd_audit`);
- spike-level DP (bit, replace-one): canary spike patterns of T·C·H·W secret bits through the
  spike mechanism (per-bit claim).

The attack scores each canary (projection on its direction, or a likelihood ratio); Steinke et
al.'s one-run bound turns the guesses into an ε lower bound at `dp-audit-confidence`
(`fedsnn.core.privacy.one_run`). A bound above the accounted ε is a failed claim.

What this does not audit: the canaries do not travel through the federation's network, so a
leak in what a real node adds to its reply beyond the mechanism (a metric, a count) is only
caught where the mechanism's own reply step is used (local DP's `release` is; the regression
suite in tests/strategies/test_dp_audit.py models the others).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg, Strategy

from clients.node import NodeSetup
from clients.ledgers import NodeLedgers
from clients.privacy import plan_round
from fedsnn.core.config import RunConfig
from fedsnn.core.models import ModelSpec
from fedsnn.core.privacy.accounting import composed_gaussian_epsilon, replace_one_multiplier
from fedsnn.core.privacy.canaries import client_canary_scores, secret_inclusion, spike_canary_scores
from fedsnn.core.privacy.clipping import clip_update
from fedsnn.core.privacy.dpsgd_audit import claimed_epsilon, dirac_canary_scores
from fedsnn.core.privacy.one_run import OneRunBound, bound_from_scores
from fedsnn.core.privacy.units import DEFENSE_UNITS, EpsilonUnit
from fedsnn.core.protocol import CLIENT_DP_FLAG, EQUAL_WEIGHT_KEY
from strategies.dp import CLIPPING_MODES, CentralDP
from strategies.dp_client import DpSgd, LocalDP
from strategies.spike_dp import SpikeDP


@dataclass(frozen=True)
class MechanismAudit:
    """One mechanism's accounted ε beside the lower bound the attack proved."""

    mechanism: str
    accounted_epsilon: float
    unit: EpsilonUnit
    bound: OneRunBound
    attack: str
    seconds: float

    @property
    def holds(self) -> bool:
        """False when the attack proves more ε than the accountant allows."""
        return self.bound.epsilon <= self.accounted_epsilon

    def sentence(self) -> str:
        """'dp-sgd: accounted ε 8 (per sample, add/remove-one); empirical lower bound 3.1 at
        95 %: claim holds'."""
        verdict = "claim holds" if self.holds else "CLAIM VIOLATED"
        return (f"{self.mechanism}: accounted ε {self.accounted_epsilon:.4g} (per "
                f"{self.unit.unit}, {self.unit.relation}); empirical lower bound "
                f"{self.bound.epsilon:.4g} at {self.bound.confidence:.0%}: {verdict}")

    def to_dict(self) -> dict[str, Any]:
        return {"mechanism": self.mechanism, "accounted-epsilon": self.accounted_epsilon,
                "empirical-epsilon-lower-bound": self.bound.epsilon,
                "unit": self.unit.unit, "relation": self.unit.relation,
                "claim": "holds" if self.holds else "violated", "attack": self.attack,
                "bound": self.bound.to_dict(), "seconds": round(self.seconds, 2),
                "summary": self.sentence()}


@dataclass(frozen=True)
class RunFacts:
    """What the audits need to know about the run."""

    config: RunConfig
    spec: ModelSpec
    model: torch.nn.Module   # the final global model
    rounds: int              # releases made (rounds that trained)
    num_partitions: int
    reported: Mapping[str, float]  # last round's train metrics


def _local_dp(wrapper: LocalDP, facts: RunFacts, m: int) -> tuple[np.ndarray, np.ndarray, float]:
    config = {**wrapper.settings, CLIENT_DP_FLAG: 1}
    ledgers = [NodeLedgers() for _ in range(m)]  # each canary client keeps its own
    sent = ArrayRecord({"w": Array(np.zeros(m, np.float32))})

    def node_release(updates: np.ndarray, server_round: int) -> np.ndarray:
        """Each canary client's update through the node's own release (`RoundPrivacy.release`)."""
        out = []
        for row, ledger in zip(updates, ledgers, strict=True):
            plan = plan_round(config, facts.config, facts.spec, ledger, public_examples=1)
            update = ArrayRecord({"w": Array(row.astype(np.float32))})
            out.append(plan.release(update, {"num-examples": 1}, sent=sent)[0]["w"].numpy())
        return np.stack(out)

    included = secret_inclusion(m)
    clip, z = wrapper.defense.clipping_norm, wrapper.defense.noise_multiplier
    scores = client_canary_scores(node_release, included, clipping_norm=clip, rounds=facts.rounds)
    accounted = composed_gaussian_epsilon(history=[((replace_one_multiplier(z),), facts.rounds)],
                                          delta=facts.config.dp_delta,
                                          accountant=facts.config.dp_accountant)
    return scores, included, accounted


def _central_dp(wrapper: CentralDP, facts: RunFacts, m: int
                ) -> tuple[np.ndarray, np.ndarray, float]:
    fixed = "server-fixed" if wrapper.clipping.startswith("server") else "client-fixed"
    sent = ArrayRecord({"w": Array(np.zeros(m, np.float32))})

    def aggregate(updates: np.ndarray, server_round: int) -> np.ndarray:
        dp = CLIPPING_MODES[fixed](FedAvg(weighted_by_key=EQUAL_WEIGHT_KEY),
                                   wrapper.noise_multiplier, wrapper.clipping_norm, m)
        dp.current_arrays = sent
        if fixed == "client-fixed":  # the clients clip (as `release` does on a node)
            updates = np.stack([clip_update([row], [np.zeros(m)],
                                            clipping_norm=wrapper.clipping_norm).arrays[0]
                                for row in updates])
        replies = [Message(RecordDict({"arrays": ArrayRecord({"w": Array(row.astype(np.float32))}),
                                       "metrics": MetricRecord({EQUAL_WEIGHT_KEY: 1.0,
                                                                "num-examples": 1})}),
                           dst_node_id=0, message_type="train") for row in updates]
        arrays, _ = dp.aggregate_train(server_round, replies)
        if arrays is None:
            raise RuntimeError("dp-audit: central DP refused the canary round")
        return np.broadcast_to(arrays["w"].numpy().astype(np.float64) * m, (m, m))

    included = secret_inclusion(m)
    scores = client_canary_scores(aggregate, included, clipping_norm=wrapper.clipping_norm,
                                  rounds=facts.rounds)
    accounted = composed_gaussian_epsilon(
        history=[((replace_one_multiplier(wrapper.noise_multiplier),), facts.rounds)],
        delta=wrapper.delta, accountant=wrapper.accountant)
    return scores, included, accounted


def _dp_sgd(wrapper: DpSgd, facts: RunFacts, m: int) -> tuple[np.ndarray, np.ndarray, float]:
    config = facts.config
    data = NodeSetup.for_partition(config, 0, facts.num_partitions).data
    # the round as a node plans it (σ calibrated to a target ε, q and steps from its public n̂)
    planned = plan_round(wrapper.settings, config, facts.spec, NodeLedgers(),
                         public_examples=len(data.train_x)).dp_sgd
    if planned is None:
        raise RuntimeError("dp-audit: the DP-SGD wrapper sends no DP-SGD settings")
    # σ the clients reported using, else the one planned
    sigma = float(facts.reported.get("dp-sgd-noise-multiplier-max",
                                     planned.settings.noise_multiplier))
    settings = dataclasses.replace(planned.settings, noise_multiplier=sigma, target_epsilon=0.0)
    q = planned.sample_rate
    steps = facts.rounds * planned.steps
    m = min(m, sum(p.numel() for p in facts.model.parameters()))
    included = secret_inclusion(m)
    scores = dirac_canary_scores(copy.deepcopy(facts.model), data.train_x, data.train_y,
                                 settings=settings, batch_size=config.batch_size, steps=steps,
                                 included=included)
    accounted = claimed_epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps,
                                delta=config.dp_delta, accountant=config.dp_accountant)
    return scores, included, accounted


def _spike_dp(wrapper: SpikeDP, facts: RunFacts, m: int) -> tuple[np.ndarray, np.ndarray, float]:
    included = secret_inclusion(m * wrapper.ledger.bits_per_sample)  # m patterns of T·C·H·W bits
    scores = spike_canary_scores(wrapper.ledger.mechanism, included)
    return scores, included, wrapper.ledger.epsilon_bit


_BIT = EpsilonUnit("bit", "replace-one", "one input spike bit of one release")
Audit = Callable[[Any, RunFacts, int], tuple[np.ndarray, np.ndarray, float]]
# wrapper class -> (mechanism name, audit, unit, δ of the claim, what the attack is)
AUDITS: dict[type, tuple[str, Audit, EpsilonUnit, Callable[[RunFacts], float], str]] = {
    LocalDP: ("local-dp", _local_dp, DEFENSE_UNITS["local-dp"], lambda f: f.config.dp_delta,
              "canary clients (±10C on a known coordinate, clipped to ±C) through the node's "
              "release; projection summed over rounds"),
    CentralDP: ("central-dp", _central_dp, DEFENSE_UNITS["central-dp"],
                lambda f: f.config.dp_delta,
                "canary clients (±10C on a known coordinate, clipped to ±C) as one round's replies "
                "to the fixed-clipping release; projection of the aggregate summed over rounds"),
    DpSgd: ("dp-sgd", _dp_sgd, DEFENSE_UNITS["dp-sgd"], lambda f: f.config.dp_delta,
            "white-box Dirac gradient canaries, every noisy gradient seen; likelihood ratio"),
    SpikeDP: ("spike-dp", _spike_dp, _BIT, lambda f: 0.0,
              "canary spike patterns (secret bits); the bit seen"),
}


def _wrappers(strategy: Strategy) -> list[Any]:
    found, current, seen = [], strategy, set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current) in AUDITS:
            found.append(current)
        current = getattr(current, "strategy", None)
    return found


def audit_dp_claims(strategy: Strategy, facts: RunFacts) -> list[MechanismAudit]:
    """One `MechanismAudit` per DP defense in `strategy`'s stack (none without one, or when no
    round trained: nothing was released)."""
    if facts.rounds == 0:
        return []
    audits = []
    for wrapper in _wrappers(strategy):
        name, audit, unit, delta, attack = AUDITS[type(wrapper)]
        started = time.monotonic()
        scores, included, accounted = audit(wrapper, facts, facts.config.dp_audit_canaries)
        bound = bound_from_scores(scores, included, delta=delta(facts),
                                  confidence=facts.config.dp_audit_confidence)
        audits.append(MechanismAudit(name, accounted, unit, bound, attack,
                                     time.monotonic() - started))
    return audits


def audit_summary(audits: list[MechanismAudit]) -> dict[str, Any]:
    """results.json / audit.json's `dp-audit` entry."""
    return {"claims": "hold" if all(a.holds for a in audits) else "violated",
            "violated": [a.mechanism for a in audits if not a.holds],
            "mechanisms": [a.to_dict() for a in audits]}
