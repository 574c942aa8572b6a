"""Which rounds and clients the curious server attacks, and how (from the run config)."""

from __future__ import annotations

from dataclasses import dataclass

from attacks import NEEDS, AttackSettings, PublicData, ThreatModel, refusal
from attacks.threat_model import PUBLIC_DATA
from fedsnn.config import ConfigError, RunConfig
from fedsnn.data.sources import ImageData

# audit-public-data -> what the curious server is given ("none": nothing)
PUBLIC_DATA_SOURCES = ("none", "test-split")


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


@dataclass(frozen=True)
class AuditPlan:
    """What the curious server attacks.

    Attributes:
        rounds: rounds whose replies are attacked (None: every round).
        max_clients: at most this many replies per round, lowest partition ids first.
        max_batch: replies computed on more samples than this are recorded as skipped (a dummy
            batch that large is beyond what this attacker can optimize in its budget).
        settings: the attack and its settings.
        workers: attack worker processes (0: a background thread in the server process).
        public_data: "none", or "test-split": the dataset's test split, disjoint from every
            client's data, is the curious server's public same-domain data.
    """

    rounds: frozenset[int] | None
    max_clients: int
    max_batch: int
    settings: AttackSettings
    workers: int = 1
    public_data: str = "none"

    def public(self, data: ImageData) -> PublicData | None:
        """The public images the plan grants the curious server (None for "none")."""
        if self.public_data == "none":
            return None
        return PublicData(data.test_x, f"{data.name} test split ({len(data.test_x)} images, "
                                       "disjoint from every client)")

    def attacks_round(self, server_round: int) -> bool:
        return self.rounds is None or server_round in self.rounds

    @classmethod
    def from_config(cls, config: RunConfig) -> AuditPlan:
        """Build and validate the plan from the `audit-*` keys."""
        try:
            settings = AttackSettings(
                attack=config.audit_attack, iterations=config.audit_iterations,
                optimizer=config.audit_optimizer, restarts=config.audit_restarts,
                tv_weight=config.audit_tv_weight, seed=config.seed,
                time_budget_s=config.audit_time_budget_s)
        except ValueError as error:
            raise ConfigError(f"audit: {error}") from None
        if config.audit_max_clients < 1 or config.audit_max_batch < 1 or config.audit_workers < 0:
            raise ConfigError("audit-max-clients and audit-max-batch: expected integers >= 1; "
                              f"audit-workers: >= 0; got {config.audit_max_clients}, "
                              f"{config.audit_max_batch}, {config.audit_workers}")
        if config.audit_public_data not in PUBLIC_DATA_SOURCES:
            raise ConfigError(f"audit-public-data: expected one of {list(PUBLIC_DATA_SOURCES)}, "
                              f"got {config.audit_public_data!r}")
        threat_model = ThreatModel()
        if config.audit_public_data != "none":
            threat_model = threat_model.grant(PUBLIC_DATA)
        reason = refusal(settings.attack, NEEDS[settings.attack], threat_model)
        if reason:
            raise ConfigError(f"audit-attack: {reason} (set audit-public-data='test-split')")
        return cls(parse_rounds(config.audit_rounds), config.audit_max_clients,
                   config.audit_max_batch, settings, config.audit_workers,
                   config.audit_public_data)
