"""Which rounds and clients the curious server attacks, and how (from the run config)."""

from __future__ import annotations

from dataclasses import dataclass

from attacks import AttackSettings
from fedsnn.config import ConfigError, RunConfig


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
    """

    rounds: frozenset[int] | None
    max_clients: int
    max_batch: int
    settings: AttackSettings
    workers: int = 1

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
        return cls(parse_rounds(config.audit_rounds), config.audit_max_clients,
                   config.audit_max_batch, settings, config.audit_workers)
