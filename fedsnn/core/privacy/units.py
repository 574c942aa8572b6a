"""What each reported ε means: its unit, its neighbouring relation and what it covers.

Two ε with different units or relations are not comparable (a per-bit ε is no per-sample
guarantee; a replace-one ε is roughly twice an add/remove one of the same mechanism), so every ε
that reaches results.json, a report or a table carries its `EpsilonUnit` (`epsilon_units`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class EpsilonUnit:
    """unit: client | sample | bit; relation: replace-one | add/remove-one; covers: what the
    guarantee protects, and what it leaves out."""

    unit: str
    relation: str
    covers: str

    def label(self) -> str:
        """Short form for table headers: 'client, replace-one'."""
        return f"{self.unit}, {self.relation}"


_CENTRAL = EpsilonUnit("client", "replace-one",
                       "a client's whole data (inputs and labels) in the released aggregate; "
                       "the server still sees every update in the clear")
_LOCAL = EpsilonUnit("client", "replace-one",
                     "a client's whole data (inputs and labels) in every reply it sends")
_DPSGD = EpsilonUnit("sample", "add/remove-one",
                     "one training sample (input and label) in every reply; Poisson-sampled "
                     "batches")
_SPIKE = EpsilonUnit("sample", "replace-one",
                     "one sample's input spike bits (T·C·H·W) in every release; labels are NOT "
                     "protected")
_BIT = EpsilonUnit("bit", "replace-one",
                   "one input spike bit of one release only: NOT a per-sample guarantee; labels "
                   "are NOT protected")

# metric key (without a trailing '-max') -> its unit
EPSILON_UNITS: dict[str, EpsilonUnit] = {
    "central-dp-client-epsilon": _CENTRAL,
    "central-dp-client-epsilon-round": _CENTRAL,
    "local-dp-client-epsilon": _LOCAL,
    "local-dp-client-epsilon-release": _LOCAL,
    "dp-sgd-sample-epsilon": _DPSGD,
    "spike-dp-sample-epsilon": _SPIKE,
    "spike-dp-bit-epsilon": _BIT,
}

# defense name -> the unit of the ε its run reports
DEFENSE_UNITS: dict[str, EpsilonUnit] = {"central-dp": _CENTRAL, "local-dp": _LOCAL,
                                         "dp-sgd": _DPSGD, "spike-dp": _SPIKE}


def epsilon_unit(key: str) -> EpsilonUnit | None:
    """The unit of metric `key` (`-max` is the largest over clients, same unit); None if `key`
    is not an ε.

    Example:
        >>> epsilon_unit("dp-sgd-sample-epsilon-max").label()
        'sample, add/remove-one'
    """
    return EPSILON_UNITS.get(key.removesuffix("-max"))


def epsilon_units(rounds: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """{ε key: its unit as a dict} for every ε among the rounds' train metrics (results.json)."""
    keys = {key for entry in rounds for key in entry.get("train", {}) if epsilon_unit(key)}
    return {key: asdict(epsilon_unit(key)) for key in sorted(keys)}  # type: ignore[arg-type]
