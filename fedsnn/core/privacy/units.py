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


# What each mechanism satisfies (issue 27). A protected reply carries no count measured on the
# data: `num-examples` and `local-steps` come from the node's public example count n̂ (its
# partition size as the federation assigned it, or node config `public-examples`), DP-SGD takes
# exactly E·⌈n̂/B⌉ Poisson steps at rate q = 1/⌈n̂/B⌉ and divides by the public q·n̂, so adding or
# removing one sample changes nothing the server sees outside the noised update.
CENTRAL_UNIT = EpsilonUnit(
    "client", "replace-one",
    "a client's whole data (inputs and labels) in the released aggregate (the global model); "
    "the server still sees every update in the clear, and the published round metrics carry no "
    "raw client figure (train loss, counts) beside it")
LOCAL_UNIT = EpsilonUnit(
    "client", "replace-one",
    "a client's whole data (inputs and labels, any size) in every reply it sends: the reply's "
    "counts are public figures from n̂, never the data's")
DPSGD_UNIT = EpsilonUnit(
    "sample", "add/remove-one",
    "one training sample (input and label) in every reply; Poisson-sampled batches at a rate "
    "and a step count fixed by the public n̂, so the reply does not depend on the data's size")
SPIKE_UNIT = EpsilonUnit("sample", "replace-one",
                         "one sample's input spike bits (T·C·H·W) in every release; labels are "
                         "NOT protected")
BIT_UNIT = EpsilonUnit("bit", "replace-one",
                       "one input spike bit of one release only: NOT a per-sample guarantee; "
                       "labels are NOT protected")

# metric key (without a trailing '-max') -> its unit
EPSILON_UNITS: dict[str, EpsilonUnit] = {
    "central-dp-client-epsilon": CENTRAL_UNIT,
    "central-dp-client-epsilon-round": CENTRAL_UNIT,
    "local-dp-client-epsilon": LOCAL_UNIT,
    "local-dp-client-epsilon-release": LOCAL_UNIT,
    "dp-sgd-sample-epsilon": DPSGD_UNIT,
    "spike-dp-sample-epsilon": SPIKE_UNIT,
    "spike-dp-bit-epsilon": BIT_UNIT,
}

# defense name -> the unit of the ε its run reports
DEFENSE_UNITS: dict[str, EpsilonUnit] = {"central-dp": CENTRAL_UNIT, "local-dp": LOCAL_UNIT,
                                         "dp-sgd": DPSGD_UNIT, "spike-dp": SPIKE_UNIT}


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
