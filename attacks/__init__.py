"""Gradient inversion. Sees only what an attacker sees: no Flower, no data loading.

Entry point:

    invert(observations: Sequence[Observation], settings: AttackSettings) -> list[Reconstruction]

An attack function (a value of `ATTACKS`) runs one restart:
`attack(observation, settings, *, seed, deadline=None) -> Reconstruction`.

One reconstruction per observation, in order. Each observation is attacked independently,
`settings.restarts` times; the restart with the lowest gradient-matching loss is kept (the
attacker's own criterion: ground truth has no way in). `invert` never raises for a failing
attack: the reconstruction's `status` says FAILED / DIVERGED / TIMEOUT and `message` says why.

Example:
    >>> from attacks import AttackSettings, invert
    >>> recs = invert(observations, AttackSettings(attack="idlg", iterations=100))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from attacks.analytic import analytic
from attacks.batched import invert_batched
from attacks.batched import supports as supports_batched
from attacks.dlg import dlg
from attacks.grnn import grnn
from attacks.idlg import idlg, infer_labels
from attacks.learned_inverter import learned_inverter
from attacks.rate_decoder import CapabilityError, PublicData, rate_decoder, require_public
from attacks.runner import AttackFn, invert_one
from attacks.settings import AttackSettings, AttackSettingsError, spike_modality
from attacks.smooth import smooth
from attacks.strongest_mode import strongest
from attacks.threat_model import (CLIENT_RANDOMNESS, DATA_FORMAT, GRADIENT_NEEDS, PUBLIC_DATA,
                                  UNROLLED_NEEDS, ThreatModel, refusal)
from attacks.types import LocalTraining, Observation, Reconstruction, Status
from attacks.unrolled import unrolled
from attacks.unrolled_batched import invert_unrolled
from attacks.unrolled_batched import supports as supports_unrolled_batched

ATTACKS: dict[str, AttackFn] = {"dlg": dlg, "idlg": idlg, "grnn": grnn, "analytic": analytic,
                             "smooth": smooth, "strongest": strongest, "unrolled": unrolled,
                             "rate-decoder": rate_decoder, "learned-inverter": learned_inverter}
# attacks that take the public images a threat model may grant (`public=`): those whose NEEDS
# include public-data are refused without them, `strongest` leaves out the candidates that need them
TAKES_PUBLIC_DATA = frozenset({"rate-decoder", "strongest", "learned-inverter", "unrolled"})

# The server capabilities each attack needs (attacks/threat_model.py); `refusal` checks them.
NEEDS: dict[str, frozenset[str]] = {**{name: GRADIENT_NEEDS for name in ATTACKS},
                                    "unrolled": UNROLLED_NEEDS,
                                    "rate-decoder": GRADIENT_NEEDS | {PUBLIC_DATA},
                                    "learned-inverter": UNROLLED_NEEDS | {PUBLIC_DATA}}
# What each attack reads when the threat model grants it: its needs, and the capabilities it uses
# when granted but runs without (the report names granted capabilities no attack used).
USES: dict[str, frozenset[str]] = {
    **NEEDS, "unrolled": UNROLLED_NEEDS | {DATA_FORMAT, CLIENT_RANDOMNESS},
    "strongest": GRADIENT_NEEDS | {PUBLIC_DATA}}


def invert(observations: Sequence[Observation], settings: AttackSettings, *,
           vectorize: bool | int = False, public: PublicData | None = None) -> list[Reconstruction]:
    """Attack each observation independently; see the module docstring.

    `vectorize` (True, or K) runs DLG/iDLG/GRNN through the batched engine (attacks/batched.py): K
    targets per optimization (True: K from memory), each with the result a one-at-a-time run
    gives, up to floating-point noise; the unrolled attack stacks replies of one shape K at a
    time (attacks/unrolled_batched.py; True: its default K, and only replies small enough for
    stacking to pay). Other attacks ignore it. `public`: public same-domain
    images, when the threat model grants them (the rate-decoder attack needs them).

    Raises:
        AttackSettingsError: an unknown attack.
        CapabilityError: the attack needs public data and `public` is None (or of another shape).
    """
    if settings.attack not in ATTACKS:
        raise AttackSettingsError(
            f"Unknown attack {settings.attack!r}; expected one of {sorted(ATTACKS)}")
    if PUBLIC_DATA in NEEDS[settings.attack]:
        for observation in observations:
            require_public(public, observation.model_spec)
    if vectorize and supports_unrolled_batched(settings):
        return invert_unrolled(observations, settings,
                               max_batch=None if vectorize is True else int(vectorize))
    if vectorize and supports_batched(settings):
        max_batch = None if vectorize is True else int(vectorize)
        return invert_batched(observations, settings, max_batch=max_batch)
    attack = ATTACKS[settings.attack]
    if settings.attack in TAKES_PUBLIC_DATA:
        attack = partial(attack, public=public)
    return [invert_one(attack, observation, settings) for observation in observations]


__all__ = ["ATTACKS", "NEEDS", "AttackFn", "AttackSettings", "AttackSettingsError",
           "CapabilityError", "LocalTraining", "Observation", "PublicData", "Reconstruction",
           "Status", "ThreatModel", "USES", "infer_labels", "invert", "refusal", "spike_modality"]
