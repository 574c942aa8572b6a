"""What leaked, pooled over an audit's rows, each figure beside its nulls, and the verdict.

Rows are audit.json's per-update rows (`Auditor.score`): canary rows (updates the server made
itself) are the positive control, the others the clients'. Pooled rates carry client-clustered
intervals (`fedsnn.core.metrics.clustered_rate_stat`: images of one client are not independent)
and are tested against the pooled nulls (`fedsnn.audit.decision`); the verdict reads the headline
metric, identified, beside the canary's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from scipy import stats

from fedsnn.audit.chance import RATE_METRICS, VALUE_METRICS
from fedsnn.audit.decision import (LEVEL, Count, MetricTest, Outcome, Verdict, decide,
                                   rate_test)
from fedsnn.core.metrics import clustered_rate_stat, mean_stat, rate_stat

HEADLINE = "identified"
FINISHED = ("ok",)


def _size(row: Mapping[str, Any]) -> int:
    """The images behind a row."""
    return int(row.get("images") or row.get("batch-size") or 1)


def scored_rows(rows: Sequence[Mapping[str, Any]], *, canary: bool = False
                ) -> list[Mapping[str, Any]]:
    """Rows scored with their nulls (`tests`), clients' or (with `canary`) canaries' (the
    positive controls: not the "what to change" canaries made under another defense)."""
    return [r for r in rows if r.get("tests") and bool(r.get("canary")) == canary
            and not r.get("defense")]


def pooled_test(rows: Sequence[Mapping[str, Any]], metric: str) -> dict[str, Any] | None:
    """One metric pooled over rows: counts summed (rates; Fisher's exact test on the sums) or
    per-row p-values combined (PSNR / SSIM; Fisher's method), each null beside the attack, with
    client-clustered intervals for rates."""
    tests = [r["tests"][metric] for r in rows if metric in r.get("tests", {})]
    if not tests:
        return None
    if metric in RATE_METRICS:
        names = {name for t in tests for name in t["counts"]}
        per_row = {name: [t["counts"][name] for t in tests if name in t["counts"]]
                   for name in names}
        sums = {name: Count(sum(c[0] for c in v), sum(c[1] for c in v))
                for name, v in per_row.items()}
        test = rate_test(metric, sums.pop("attack"), sums)
        intervals = {name: clustered_rate_stat([c[0] for c in v], [c[1] for c in v])
                     for name, v in per_row.items()}
        return {**test.to_dict(), "intervals": intervals}
    p_values = [t["p_value"] for t in tests]
    names = set.intersection(*(set(t["nulls"]) for t in tests))
    weights = [_size(r) for r in rows if metric in r.get("tests", {})]
    test = MetricTest(metric, _weighted([t["attack"] for t in tests], weights),
                      {n: _weighted([t["nulls"][n] for t in tests], weights) for n in names},
                      float(stats.combine_pvalues(p_values, method="fisher").pvalue)
                      if len(p_values) > 1 else p_values[0])
    strongest = max(test.nulls, key=lambda n: test.nulls[n], default="")
    return {**test.to_dict(), "strongest": strongest, "chance": test.nulls.get(strongest)}


def _weighted(values: Sequence[float | None], weights: Sequence[int]) -> float:
    pairs = [(float(v), w) for v, w in zip(values, weights, strict=True)
             if v is not None and math.isfinite(float(v))]
    return sum(v * w for v, w in pairs) / sum(w for _, w in pairs) if pairs else math.nan


def _as_test(pooled: Mapping[str, Any]) -> MetricTest:
    return MetricTest(pooled["metric"], pooled["attack"], dict(pooled["nulls"]),
                      pooled["p_value"], pooled["strongest"], dict(pooled.get("counts", {})))


def unfinished(rows: Sequence[Mapping[str, Any]], skipped: Sequence[Mapping[str, Any]] = ()
               ) -> str:
    """What did not finish, in words: attacks that timed out or failed (steps done of planned)
    and replies refused; "" when every attack finished."""
    parts = [f"round {r['round']} "
             f"{'canary' if r.get('canary') else 'partition ' + str(r['partition-id'])} "
             f"{r['status']}"
             + (f" after {r['steps-done']} of {r['steps-planned']} steps"
                if r.get("steps-planned") else "")
             for r in rows if r.get("status") not in FINISHED]
    parts += [f"round {s['round']} partition {s['partition-id']} not attacked"
              for s in skipped if "refused" in str(s.get("reason", "")) or
              "not grant" in str(s.get("reason", ""))]
    return "; ".join(parts)


def verdict_for(rows: Sequence[Mapping[str, Any]], canaries: Sequence[Mapping[str, Any]],
                skipped: Sequence[Mapping[str, Any]] = (), level: float = LEVEL
                ) -> Verdict | None:
    """The verdict on the headline metric pooled over `rows`, with the pooled canaries as the
    positive control (None when no row was scored)."""
    headline = pooled_test(rows, HEADLINE)
    if headline is None:
        return None
    canary = pooled_test(canaries, HEADLINE)
    missing = unfinished([*rows, *canaries], skipped)
    return decide(_as_test(headline), canary=None if canary is None else _as_test(canary),
                  complete=not missing, unfinished=missing, level=level)


def update_verdicts(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any] | None]:
    """Per row, the verdict of that update alone (its round's canaries as the control); None
    for canary rows and rows not scored."""
    out = []
    for row in rows:
        if row.get("canary") or not row.get("tests"):
            out.append(None)
            continue
        canaries = [c for c in scored_rows(rows, canary=True) if c["round"] == row["round"]]
        verdict = verdict_for([row], canaries)
        out.append(None if verdict is None else verdict.to_dict())
    return out


def _histogram_stats(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, Any] | None:
    scored = [r[key] for r in rows if (r.get(key) or {}).get("all-exact") is not None]
    if not scored:
        return None
    return {"clients-exact": rate_stat(sum(int(s["all-exact"]) for s in scored), len(scored)),
            "clients-exact-count": [sum(int(s["all-exact"]) for s in scored), len(scored)],
            "classes-exact": mean_stat([s["classes-exact"] for s in scored]),
            "total-variation": mean_stat([s["total-variation"] for s in scored])}


def _histogram_test(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The histograms pooled: per-client p-values against the prior combined (Fisher's
    method), and whether the estimate is on average worse than the prior."""
    tested = [r for r in rows if r.get("histogram-test")]
    if not tested:
        return None
    p_values = [r["histogram-test"]["p-value"] for r in tested]
    estimate = _histogram_stats(tested, "histogram")
    prior = _histogram_stats(tested, "prior-histogram")
    assert estimate is not None and prior is not None
    p = (float(stats.combine_pvalues(p_values, method="fisher").pvalue) if len(p_values) > 1
         else p_values[0])
    worse = estimate["total-variation"]["value"] > prior["total-variation"]["value"]
    return {"p-value": p, "worse-than-prior": worse,
            "outcome": (Outcome.LEAK if p < LEVEL else Outcome.NO_EVIDENCE).value}


def leakage_summary(audit: Mapping[str, Any]) -> dict[str, Any]:
    """Pooled leakage of one audit (audit.json's "attacks", "canaries", "baselines", "skipped"): each
    metric beside each null with counts, clustered intervals and p-values; the canary's; the
    class histograms beside the prior; the verdict."""
    rows = [*audit.get("attacks", []), *audit.get("canaries", [])]
    clients, canaries = scored_rows(rows), scored_rows(rows, canary=True)
    baselines = audit.get("baselines", {})
    tests = {m: t for m in (*RATE_METRICS, *VALUE_METRICS)
             if (t := pooled_test(clients, m)) is not None}
    canary_tests = {m: t for m in (HEADLINE, *VALUE_METRICS)
                    if (t := pooled_test(canaries, m)) is not None}
    verdict = verdict_for(clients, canaries, audit.get("skipped", []))
    client_rows = [r for r in rows if not r.get("canary")]
    return {
        "replies": len(client_rows),
        "canaries": len(canaries),
        "identified": (tests.get(HEADLINE) or {}).get("intervals", {}).get("attack"),
        "identified-guesses": {name: rate_stat(int(b["identified"]), int(b["samples"]))
                               for name, b in baselines.items() if b.get("samples")},
        "asr": (tests.get("asr") or {}).get("intervals", {}).get("attack"),
        "tests": tests,
        "canary": canary_tests,
        "histogram": _histogram_stats(client_rows, "histogram"),
        "prior-histogram": _histogram_stats(client_rows, "prior-histogram"),
        "histogram-test": _histogram_test(client_rows),
        "verdict": None if verdict is None else verdict.to_dict(),
    }


def _pct(stat: Mapping[str, float] | None) -> str:
    if stat is None or not math.isfinite(stat.get("value", math.nan)):
        return "n/a"
    counts = (f" = {stat['successes']}/{stat['trials']}" if "successes" in stat else "")
    return (f"{100 * stat['value']:.0f} %{counts} (95 % CI {100 * stat['low']:.0f}–"
            f"{100 * stat['high']:.0f} %)")


def verdict(summary: Mapping[str, Any], model: str) -> list[str]:
    """Plain-words sentences: the verdict (a test against the strongest null, with the canary),
    then the class histograms beside the prior."""
    if not summary.get("replies"):
        return [f"**{model}: nothing was attacked** (see the skipped replies below)."]
    lines = []
    decided = summary.get("verdict")
    if decided is not None:
        lines.append(f"**{model}:** {decided['sentence']}")
    else:
        lines.append(f"**{model}: no verdict**: these rows were scored without their nulls (an "
                     "audit from an older version, or nothing scored); re-run the audit.")
    histogram, prior = summary.get("histogram"), summary.get("prior-histogram")
    tested = summary.get("histogram-test") or {}
    if histogram is not None and prior is not None:
        worse = (" **The estimate is worse than the prior.**"
                 if tested.get("worse-than-prior") else "")
        lines.append(
            f"**{model}: class histograms: {tested.get('outcome', 'not tested')}** "
            f"(p = {tested.get('p-value', math.nan):.2g}). The estimate read "
            f"{_pct(histogram['clients-exact'])} of the attacked clients' histograms exactly "
            f"({100 * histogram['classes-exact']['value']:.0f} % of the classes exact, total "
            f"variation {histogram['total-variation']['value']:.2f}); the class prior gets "
            f"{_pct(prior['clients-exact'])} exact (total variation "
            f"{prior['total-variation']['value']:.2f}).{worse}")
    return lines or [f"**{model}: no attacked reply could be scored.**"]
