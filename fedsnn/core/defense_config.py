"""The train-config settings of the client-side defenses, each key declared once (issue 25).

A server wrapper (`strategies.dp_client`, `strategies.spike_dp`) builds one of these dataclasses
and writes `to_config()` into every round's train config; the node reads it back with
`from_config` (`clients.privacy.plan_round`). Each field names its train-config key in its
metadata, so a key is spelled here and nowhere else in the product.

A value that cannot work (missing, of the wrong type, a non-positive clipping norm, a δ outside
(0, 1)) raises `DefenseConfigError`, one line naming the key; the node answers it with an error
reply (`client_app`). A noise multiplier of 0 passes: whether a round with too little noise may
run is the node's policy's decision (`clients.policy` refuses it with its own reason).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from fedsnn.core.config import DP_ACCOUNTANTS, SPIKE_DP_MECHANISMS

Scalar = int | float | str


class DefenseConfigError(ValueError):
    """A client-side defense's train-config entry is missing or cannot work (names the key)."""


@dataclass(frozen=True)
class Rule:
    """What values a key accepts: a test and its wording for the message."""

    test: Callable[[Any], bool]
    expected: str


POSITIVE = Rule(lambda v: v > 0, "a positive number")
NON_NEGATIVE = Rule(lambda v: v >= 0, "a number >= 0")
OPEN_UNIT = Rule(lambda v: 0 < v < 1, "a number in (0, 1)")
HALF_OPEN_UNIT = Rule(lambda v: 0 <= v < 1, "a number in [0, 1)")


def one_of(options: tuple[str, ...]) -> Rule:
    """Accepts one of `options`."""
    return Rule(lambda v: v in options, f"one of {options}")


_KINDS: dict[type, tuple[type, str]] = {float: (numbers.Real, "a number"),
                                        int: (numbers.Integral, "an integer"),
                                        str: (str, "a string")}


@dataclass(frozen=True)
class Key:
    """One train-config entry: its key, its type (float, int or str) and the values that work."""

    name: str
    kind: type
    rule: Rule

    def check(self, label: str, value: Any) -> None:
        """Raise DefenseConfigError (`label`: the defense) when `value` cannot be this key's."""
        kind, wording = _KINDS[self.kind]
        if isinstance(value, bool) or not isinstance(value, kind):
            expected = wording
        elif not self.rule.test(value):
            expected = self.rule.expected
        else:
            return
        raise DefenseConfigError(f"{label}: {self.name!r}: expected {expected}, got {value!r}")


def entry(key: Key) -> Any:
    """A dataclass field carried by train-config key `key`."""
    return dataclasses.field(metadata={"key": key})


# shared by every client-side defense: the δ and the accountant of the ε a node reports
DELTA = Key("dp-delta", float, OPEN_UNIT)
ACCOUNTANT = Key("dp-accountant", str, one_of(DP_ACCOUNTANTS))


@dataclass(frozen=True, kw_only=True)
class ClientDefenseConfig:
    """Base of the client-side defenses' settings; a subclass declares its fields with `entry`.

    Class attributes:
        label: the defense's name in messages.
        marker: the field whose key in a train config asks the node for this defense.
    """

    label: ClassVar[str]
    marker: ClassVar[str]

    def __post_init__(self) -> None:
        for name, key in self._keys():
            key.check(self.label, getattr(self, name))

    @classmethod
    def _keys(cls) -> Iterator[tuple[str, Key]]:
        for f in dataclasses.fields(cls):
            yield f.name, f.metadata["key"]

    @classmethod
    def key(cls, name: str) -> str:
        """The train-config key of field `name`."""
        return dict(cls._keys())[name].name

    @classmethod
    def asked(cls, config: Mapping[str, Any]) -> bool:
        """Whether a train config asks the node for this defense."""
        return cls.key(cls.marker) in config

    def to_config(self) -> dict[str, Scalar]:
        """The train-config entries the server's wrapper writes (field order, values as given)."""
        return {key.name: getattr(self, name) for name, key in self._keys()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        """The settings a train config carries, numbers as their declared type.

        Raises:
            DefenseConfigError: a key is missing or its value cannot work (names the key).
        """
        values: dict[str, Any] = {}
        for name, key in cls._keys():
            if key.name not in config:
                raise DefenseConfigError(f"{cls.label}: the train config has no {key.name!r}")
            key.check(cls.label, config[key.name])
            values[name] = key.kind(config[key.name])
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class LocalDpConfig(ClientDefenseConfig):
    """Local DP: clip the update to C, add N(0, (zC)²)."""

    label: ClassVar[str] = "local DP"
    marker: ClassVar[str] = "noise_multiplier"

    clipping_norm: float = entry(Key("local-dp-clipping-norm", float, POSITIVE))
    noise_multiplier: float = entry(Key("local-dp-noise-multiplier", float, NON_NEGATIVE))
    delta: float = entry(DELTA)
    accountant: str = entry(ACCOUNTANT)


@dataclass(frozen=True, kw_only=True)
class DpSgdConfig(ClientDefenseConfig):
    """DP-SGD (Opacus): per-sample clipping bound, σ or a target ε over the run's epochs."""

    label: ClassVar[str] = "DP-SGD"
    marker: ClassVar[str] = "max_grad_norm"

    max_grad_norm: float = entry(Key("dp-sgd-max-grad-norm", float, POSITIVE))
    noise_multiplier: float = entry(Key("dp-sgd-noise-multiplier", float, NON_NEGATIVE))
    target_epsilon: float = entry(Key("dp-sgd-target-epsilon", float, NON_NEGATIVE))
    total_epochs: int = entry(Key("dp-sgd-total-epochs", int, POSITIVE))
    delta: float = entry(DELTA)
    accountant: str = entry(ACCOUNTANT)


@dataclass(frozen=True, kw_only=True)
class SpikeDpConfig(ClientDefenseConfig):
    """Spike-level DP: the mechanism on the input spikes, T for an ANN, the per-sample budget."""

    label: ClassVar[str] = "spike-level DP"
    marker: ClassVar[str] = "mechanism"

    mechanism: str = entry(Key("spike-dp-mechanism", str, one_of(SPIKE_DP_MECHANISMS)))
    epsilon_bit: float = entry(Key("spike-dp-epsilon-bit", float, POSITIVE))
    keep_probability: float = entry(Key("spike-dp-keep-probability", float, HALF_OPEN_UNIT))
    time_steps: int = entry(Key("spike-dp-time-steps", int, POSITIVE))
    budget: float = entry(Key("spike-dp-budget", float, NON_NEGATIVE))
    delta: float = entry(DELTA)
    accountant: str = entry(ACCOUNTANT)


# the key whose presence in a train config asks the node for each defense (`MetricKey.when`)
LOCAL_DP_KEY = LocalDpConfig.key(LocalDpConfig.marker)
DP_SGD_KEY = DpSgdConfig.key(DpSgdConfig.marker)
SPIKE_DP_KEY = SpikeDpConfig.key(SpikeDpConfig.marker)
