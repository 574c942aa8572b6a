"""Which rounds and clients the curious server attacks, and how (from the run config)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from attacks import NEEDS, USES, AttackSettings, PublicData, ThreatModel, refusal
from attacks.settings import unrolled_preset
from attacks.threat_model import PUBLIC_DATA
from fedsnn.core.config import ConfigError, RunConfig
from fedsnn.core.data.sources import ImageData

# audit-public-data -> what the curious server is given ("none": nothing)
PUBLIC_DATA_SOURCES = ("none", "test-split")

AUTO = "auto"


def parse_rounds(text: str) -> frozenset[int] | None:
    """'all' -> None (every round); '1,5,10' -> {1, 5, 10}.

    Raises:
        ConfigError: anything else.
    """
    text = text.strip().lower()
    if text == "all":
        return None
    try:
        rounds = frozenset(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        rounds = frozenset()
    if not rounds or min(rounds) < 1:
        raise ConfigError(f"audit-rounds: expected 'all' or comma-separated round numbers >= 1 "
                          f"(e.g. '1,5'), got {text!r}")
    return rounds


def parse_capabilities(key: str, text: str) -> list[str]:
    """'local-epochs, batch-size' -> ['local-epochs', 'batch-size'].

    Raises:
        ConfigError: an unknown capability name.
    """
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in ThreatModel.capability_names()]
    if unknown:
        raise ConfigError(f"{key}: unknown capability {unknown[0]!r}; expected some of "
                          f"{list(ThreatModel.capability_names())}")
    return names


def threat_model_from_config(config: RunConfig) -> ThreatModel:
    """The default curious server, with `audit-grant` added and `audit-withhold` taken away."""
    return (ThreatModel().grant(*parse_capabilities("audit-grant", config.audit_grant))
            .withhold(*parse_capabilities("audit-withhold", config.audit_withhold)))


@dataclass(frozen=True)
class AuditPlan:
    """What the curious server attacks.

    Attributes:
        rounds: rounds whose replies are attacked (None: every round).
        max_clients: at most this many replies per round, lowest partition ids first.
        max_batch: replies computed on more samples than this are recorded as skipped (a dummy
            batch that large is beyond what this attacker can optimize in its budget).
        settings: the attack and its settings (with `auto`: the one for FedSGD batches of 1,
            and the fallback when the threat model refuses the unrolled attack).
        workers: attack worker processes (0: a background thread in the server process).
        public_data: "none", or "test-split": the dataset's test split, disjoint from every
            client's data, is the curious server's public same-domain data.
        threat_model: what the server knows; attacks it does not grant are refused.
        unrolled: with `audit-attack = "auto"`, the unrolled attack's settings (FedSGD batches
            > 1 and FedAvg); None runs `settings` on every reply.
        canary: attack a canary (`fedsnn.audit.canary`) in every audited round.
    """

    rounds: frozenset[int] | None
    max_clients: int
    max_batch: int
    settings: AttackSettings
    workers: int = 1
    public_data: str = "none"
    threat_model: ThreatModel = ThreatModel()
    unrolled: AttackSettings | None = None
    canary: bool = True

    def public(self, data: ImageData) -> PublicData | None:
        """The public images the plan grants the curious server (None for "none")."""
        if self.public_data == "none":
            return None
        return PublicData(data.test_x, f"{data.name} test split ({len(data.test_x)} images, "
                                       "disjoint from every client)", labels=data.test_y)

    @property
    def attack_name(self) -> str:
        return AUTO if self.unrolled is not None else self.settings.attack

    def attacks_round(self, server_round: int) -> bool:
        return self.rounds is None or server_round in self.rounds

    def choose(self, update_mode: str, num_examples: int, classes: int = 10, *,
               optimizer: str | None = None, spiking: bool | None = None
               ) -> AttackSettings | str:
        """The strongest planned attack that applies to a reply and that the threat model
        grants, or one line saying why none does. With `auto` and public data granted, a FedSGD
        reply of at most `classes` samples gets the strongest mode (the rate decoder among its
        candidates, attacks/strongest_mode.py), a FedAvg reply the learned inverter, except an
        ANN's (`spiking` False) local SGD (`optimizer` "sgd"), which gets the unrolled attack
        (None: not known, the learned inverter)."""
        candidates = [self.settings]
        if self.unrolled is not None:
            candidates = auto_candidates(self, update_mode, num_examples, classes,
                                         inverter=not (spiking is False and optimizer == "sgd"))
        reasons = []
        for settings in candidates:
            reason = refusal(settings.attack, NEEDS[settings.attack], self.threat_model)
            if reason is None:
                return settings
            reasons.append(reason)
        return "; ".join(reasons)

    @classmethod
    def from_config(cls, config: RunConfig) -> AuditPlan:
        """Build and validate the plan from the `audit-*` keys."""
        attack = "idlg" if config.audit_attack == AUTO else config.audit_attack
        try:
            settings = AttackSettings(
                attack=attack, iterations=config.audit_iterations,
                optimizer=config.audit_optimizer, restarts=config.audit_restarts,
                tv_weight=config.audit_tv_weight, seed=config.seed,
                time_budget_s=config.audit_time_budget_s)
            unrolled = unrolled_preset(settings, iterations=config.audit_unrolled_iterations)
        except ValueError as error:
            raise ConfigError(f"audit: {error}") from None
        if attack == "unrolled":
            settings = unrolled
        if config.audit_max_clients < 1 or config.audit_max_batch < 1 or config.audit_workers < 0:
            raise ConfigError("audit-max-clients and audit-max-batch: expected integers >= 1; "
                              f"audit-workers: >= 0; got {config.audit_max_clients}, "
                              f"{config.audit_max_batch}, {config.audit_workers}")
        if config.audit_public_data not in PUBLIC_DATA_SOURCES:
            raise ConfigError(f"audit-public-data: expected one of {list(PUBLIC_DATA_SOURCES)}, "
                              f"got {config.audit_public_data!r}")
        threat_model = threat_model_from_config(config)
        if threat_model.public_data and config.audit_public_data == "none":
            raise ConfigError("audit-grant: public-data needs the data itself: set "
                              "audit-public-data='test-split'")
        public_data = config.audit_public_data
        if PUBLIC_DATA in parse_capabilities("audit-withhold", config.audit_withhold):
            public_data = "none"  # audit-withhold wins: the server is given no public images
        elif public_data != "none":
            threat_model = threat_model.grant(PUBLIC_DATA)
        if PUBLIC_DATA in NEEDS[settings.attack] and not threat_model.public_data:
            # refused before training starts; other withheld needs refuse each reply (`choose`)
            raise ConfigError(f"audit-attack: {refusal(settings.attack, NEEDS[settings.attack], threat_model)} "
                              "(set audit-public-data='test-split')")
        return cls(parse_rounds(config.audit_rounds), config.audit_max_clients,
                   config.audit_max_batch, settings, config.audit_workers,
                   public_data=public_data, threat_model=threat_model,
                   unrolled=unrolled if config.audit_attack == AUTO else None,
                   canary=config.audit_canary)


def auto_candidates(plan: AuditPlan, update_mode: str, num_examples: int, classes: int, *,
                    inverter: bool = True) -> list[AttackSettings]:
    """`auto`'s attacks for one reply, strongest first; the plan keeps the first the threat
    model grants. The unrolled attack replays local training (FedAvg, FedSGD batches > 1); with
    public data, the strongest mode (rate decoder included) on FedSGD batches it can read, and
    the learned inverter on FedAvg replies when `inverter`. It reads the head's rows, which
    Adam turns into near copies of single samples' features (28 % of lenet-snn's images at
    8 x 5 Adam steps); an ANN's SGD reply is better read by the unrolled attack (MNIST, 32 x 4
    SGD steps: the inverter 0 of 64, the unrolled attack 15 of 64; docs/results.md, "Three more
    tries at the MNIST cell")."""
    assert plan.unrolled is not None
    candidates = [plan.settings]
    if not (update_mode == "gradient" and num_examples == 1):
        candidates.insert(0, plan.unrolled)
    if plan.threat_model.public_data:
        if update_mode == "gradient" and num_examples <= classes:
            candidates.insert(0, plan.settings.with_(attack="strongest"))
        elif update_mode == "fedavg" and inverter:
            candidates.insert(0, plan.settings.with_(attack="learned-inverter"))
    return candidates


def unused_capabilities(threat_model: ThreatModel, attacks: Iterable[str]) -> list[str]:
    """The capabilities the threat model grants that none of `attacks` (those that ran) reads:
    the audit then shows less than this server could recover."""
    used = frozenset().union(*(USES.get(name, frozenset()) for name in attacks))
    return [name for name in threat_model.to_dict()["granted"] if name not in used]
