"""The verdict as a test: does the attack beat its strongest null, and could it have?

Every metric an audit reports is compared with the same metric of its nulls (images without
information about the update, scored through the identical pipeline: `fedsnn.audit.chance`) by a
one-sided test at a stated level (`LEVEL`):

- rates (identified, judge ASR, label accuracy): Fisher's exact test of the attack's count against
  each null's count (scipy `fisher_exact`, alternative "greater");
- per-image values (PSNR, SSIM): the Mann-Whitney U test (scipy `mannwhitneyu`, "greater").

The p-value is the test against the strongest null: the one with the highest value (on a tie,
the one with the most trials). A verdict
(`decide`) then reads the headline metric with the positive control beside it:

- "leak": the attack beats its strongest null (p < level);
- "inconclusive": it does not, and the canary (an update the server made itself, with the same
  settings, on images it knows) was not recovered beyond its own chance either, or the attack did
  not finish and no canary shows that it could have;
- "no evidence beyond chance": it does not, and (when a canary ran) the canary shows the attack had
  the power to find a leak here.

A timed-out or refused attack stays in the denominator: its figures are a stated lower bound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from scipy import stats

LEVEL = 0.05  # one-sided significance level of every test


class Outcome(str, Enum):
    """The three outcomes of a verdict (audit.json, the report and `fedsnn summary` use these
    words)."""

    LEAK = "leak"
    NO_EVIDENCE = "no evidence beyond chance"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Count:
    """Successes out of trials (images, or clients for histograms)."""

    hits: int
    trials: int

    @property
    def rate(self) -> float:
        return self.hits / self.trials if self.trials else math.nan

    def __add__(self, other: Count) -> Count:
        return Count(self.hits + other.hits, self.trials + other.trials)


def rate_p_value(attack: Count, null: Count) -> float:
    """One-sided p-value that the attack's rate exceeds the null's (Fisher's exact test); 1.0
    when either has no trials.

    Example:
        >>> rate_p_value(Count(8, 8), Count(0, 8)) < 0.001, rate_p_value(Count(1, 8), Count(1, 8))
        (True, 0.7666666666666667)
    """
    if attack.trials == 0 or null.trials == 0:
        return 1.0
    table = [[attack.hits, attack.trials - attack.hits], [null.hits, null.trials - null.hits]]
    return float(stats.fisher_exact(table, alternative="greater").pvalue)


def values_p_value(attack: Sequence[float], null: Sequence[float]) -> float:
    """One-sided p-value that the attack's per-image values are larger than the null's
    (Mann-Whitney U); 1.0 when either side has no finite value."""
    a = [float(v) for v in attack if v is not None and math.isfinite(float(v))]
    b = [float(v) for v in null if v is not None and math.isfinite(float(v))]
    if not a or not b:
        return 1.0
    return float(stats.mannwhitneyu(a, b, alternative="greater").pvalue)


@dataclass(frozen=True)
class MetricTest:
    """One metric of the attack beside its nulls, and the one-sided test against the strongest.

    Attributes:
        metric: e.g. "identified", "asr", "label-accuracy", "psnr", "ssim".
        attack: the attack's value (a rate or a mean).
        nulls: each null's value (same metric, same samples, same pipeline).
        p_value: the one-sided p-value against the strongest null (1.0 without a null).
        strongest: the null with the largest value, on a tie the most trials ("" without one).
        counts: for rates, "attack" and each null as [hits, trials] (counts beside percentages).
    """

    metric: str
    attack: float
    nulls: dict[str, float]
    p_value: float
    strongest: str = ""
    counts: dict[str, list[int]] = field(default_factory=dict)

    @property
    def chance(self) -> float:
        """The strongest null's value (NaN without a null)."""
        return self.nulls.get(self.strongest, math.nan)

    def beats_chance(self, level: float = LEVEL) -> bool:
        return bool(self.nulls) and self.p_value < level

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "chance": self.chance}


def rate_test(metric: str, attack: Count, nulls: Mapping[str, Count]) -> MetricTest:
    """A rate against the strongest null's rate (Fisher's exact test)."""
    kept = {name: null for name, null in nulls.items() if null.trials}
    strongest = max(kept, key=lambda n: (kept[n].rate, kept[n].trials), default="")
    return MetricTest(metric, attack.rate, {name: null.rate for name, null in kept.items()},
                      rate_p_value(attack, kept[strongest]) if strongest else 1.0, strongest,
                      {"attack": [attack.hits, attack.trials],
                       **{name: [null.hits, null.trials] for name, null in kept.items()}})


def values_test(metric: str, attack: Sequence[float], nulls: Mapping[str, Sequence[float]]
                ) -> MetricTest:
    """Per-image values against the strongest null's (the highest mean; Mann-Whitney U)."""
    kept = {name: values for name, values in nulls.items() if len(values)}
    means = {name: _mean(values) for name, values in kept.items()}
    strongest = max(means, key=lambda n: (_finite(means[n]), len(kept[n])), default="")
    return MetricTest(metric, _mean(attack), means,
                      values_p_value(attack, kept[strongest]) if strongest else 1.0, strongest)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def _mean(values: Sequence[float]) -> float:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(finite) / len(finite) if finite else math.nan


@dataclass(frozen=True)
class Verdict:
    """The audit's answer for one update (or pooled over several), from its headline metric.

    Attributes:
        outcome: leak / no evidence beyond chance / inconclusive.
        metric: the headline metric the outcome is read from ("identified").
        level: the one-sided test's level.
        p_value: the attack against its strongest null.
        attack: the attack's value; `chance`: the strongest null's; `counts`: [hits, trials] of
            the attack and each null.
        canary: the canary's value on the same metric (None: no canary ran).
        canary_p_value: the canary against its own nulls (None: no canary).
        complete: every attack finished (no timeout, failure or refusal); when False, `attack`
            is a lower bound.
        unfinished: what did not finish, in words (empty when complete).
    """

    outcome: Outcome
    metric: str
    level: float
    p_value: float
    attack: float
    chance: float
    strongest: str = ""
    counts: dict[str, list[int]] = field(default_factory=dict)
    canary: float | None = None
    canary_p_value: float | None = None
    complete: bool = True
    unfinished: str = ""

    @property
    def canary_has_power(self) -> bool | None:
        """Whether the canary was recovered beyond its own chance (None: no canary)."""
        return None if self.canary_p_value is None else self.canary_p_value < self.level

    def sentence(self) -> str:
        """The verdict in plain words, with the figures it rests on."""
        bound = "at least " if not self.complete else ""
        figure = (f"the attack {self.metric} {bound}{_pct(self.attack)}{_of(self.counts, 'attack')}"
                  f" (chance {_pct(self.chance)}{_of(self.counts, self.strongest)}"
                  f"{', ' + self.strongest if self.strongest else ''}; one-sided p = "
                  f"{self.p_value:.2g})")
        canary = ("" if self.canary is None else
                  f"; on the canary the server made itself it {self.metric} "
                  f"{_pct(self.canary)} (p = {self.canary_p_value:.2g})")
        unfinished = f"; not finished: {self.unfinished}" if self.unfinished else ""
        if self.outcome == Outcome.LEAK:
            tail = "the update leaks its images"
        elif self.outcome == Outcome.INCONCLUSIVE:
            tail = ("this audit cannot detect image leakage in this setting"
                    if self.canary_has_power is False else
                    "the attack did not finish and nothing shows it could have found a leak")
        elif self.canary_has_power:
            tail = "no evidence of leakage, and the audit could have found it"
        else:
            tail = "no evidence of leakage (no canary ran: the audit's power is unknown)"
        return f"**{self.outcome.value}** at level {self.level:g}: {figure}{canary}{unfinished}: {tail}."

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "outcome": self.outcome.value,
                "canary-has-power": self.canary_has_power, "sentence": self.sentence()}


def _pct(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f} %"


def _of(counts: Mapping[str, Sequence[int]], key: str) -> str:
    hit = counts.get(key)
    return f" = {hit[0]}/{hit[1]}" if hit else ""


def decide(test: MetricTest, *, canary: MetricTest | None = None, complete: bool = True,
           unfinished: str = "", level: float = LEVEL) -> Verdict:
    """The verdict on `test` (the headline metric), with the canary's test as the positive
    control and whether every attack finished (`complete`; `unfinished` says what did not).

    Example:
        >>> leak = rate_test("identified", Count(20, 20), {"matched-noise": Count(0, 20)})
        >>> decide(leak).outcome.value
        'leak'
    """
    powerless = canary is not None and not canary.beats_chance(level)
    if test.beats_chance(level):
        outcome = Outcome.LEAK
    elif powerless or (not complete and canary is None):
        outcome = Outcome.INCONCLUSIVE
    else:
        outcome = Outcome.NO_EVIDENCE
    return Verdict(outcome, test.metric, level, test.p_value, test.attack, test.chance,
                   test.strongest, dict(test.counts),
                   canary=None if canary is None else canary.attack,
                   canary_p_value=None if canary is None else canary.p_value,
                   complete=complete, unfinished=unfinished)
