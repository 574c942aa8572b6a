"""What leaked, in numbers with intervals and in plain words, from an audit's rows.

The summary pools a run's attacked replies: the fraction of the clients' images the attack
identified (Wilson interval, beside the best guess made without the update), the judge ASR, and
how many clients' class histograms were read exactly (beside the class-prior guess).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from fedsnn.core.metrics import mean_stat, rate_stat


def _size(row: Mapping[str, Any]) -> int:
    """The images behind a row (its batch size; 1 for rows that do not say)."""
    return int(row.get("batch-size") or 1)


def _pooled(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, float] | None:
    scored = [r for r in rows if r.get(key) is not None]
    if not scored:
        return None
    return rate_stat(sum(int(r[key]) for r in scored), sum(_size(r) for r in scored))


def _pooled_rate(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, float]:
    """Per-row rates pooled over the rows' images (hits = rate x size)."""
    hits = sum(float(r[key]) * _size(r) for r in rows)
    trials = sum(_size(r) for r in rows)
    return {**rate_stat(round(hits), trials), "value": hits / trials}


def _histogram_stats(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, Any] | None:
    scored = [r[key] for r in rows if (r.get(key) or {}).get("all-exact") is not None]
    if not scored:
        return None
    return {"clients-exact": rate_stat(sum(int(s["all-exact"]) for s in scored), len(scored)),
            "classes-exact": mean_stat([s["classes-exact"] for s in scored]),
            "total-variation": mean_stat([s["total-variation"] for s in scored])}


def leakage_summary(audit: Mapping[str, Any]) -> dict[str, Any]:
    """Pooled leakage of one audit (audit.json's "attacks" and "baselines")."""
    rows = audit.get("attacks", [])
    asr_rows = [r for r in rows if r.get("asr") is not None]
    baselines = audit.get("baselines", {})
    guesses = {name: rate_stat(int(b["identified"]), int(b["samples"]))
               for name, b in baselines.items() if b.get("samples")}
    return {
        "replies": len(rows),
        "identified": _pooled(rows, "identified"),
        "identified-guesses": guesses,
        "asr": _pooled_rate(asr_rows, "asr") if asr_rows else None,
        "histogram": _histogram_stats(rows, "histogram"),
        "prior-histogram": _histogram_stats(rows, "prior-histogram"),
    }


def _pct(stat: Mapping[str, float] | None) -> str:
    if stat is None or not math.isfinite(stat.get("value", math.nan)):
        return "n/a"
    return (f"{100 * stat['value']:.0f} % (95 % CI {100 * stat['low']:.0f}–"
            f"{100 * stat['high']:.0f} %)")


def verdict(summary: Mapping[str, Any], model: str) -> list[str]:
    """Plain-words sentences: what leaked, how sure, against which guess."""
    if not summary.get("replies"):
        return [f"**{model}: nothing was attacked** (see the skipped replies below)."]
    identified, histogram = summary.get("identified"), summary.get("histogram")
    prior = summary.get("prior-histogram")
    best_guess = max((s["value"] for s in summary.get("identified-guesses", {}).values()),
                     default=math.nan)
    lines = []
    if identified is not None:
        line = (f"**{model}: the curious server identified {_pct(identified)} of the attacked "
                f"clients' images** (the true image is the reconstruction's nearest neighbour "
                f"among all training images)")
        if math.isfinite(best_guess):
            line += (f"; a guess without the update identifies {100 * best_guess:.0f} %. " +
                     ("That is leakage." if identified["low"] > best_guess
                      else "Not distinguishable from guessing."))
        lines.append(line + ("" if math.isfinite(best_guess) else "."))
    if histogram is not None and prior is not None:
        lines.append(
            f"**{model}: the class histogram of {_pct(histogram['clients-exact'])} of the "
            f"attacked clients was read exactly** from their updates (on average "
            f"{100 * histogram['classes-exact']['value']:.0f} % of the classes exact, total "
            f"variation {histogram['total-variation']['value']:.2f}); the class-prior guess gets "
            f"{_pct(prior['clients-exact'])} of them exact (total variation "
            f"{prior['total-variation']['value']:.2f}).")
    return lines or [f"**{model}: no attacked reply could be scored.**"]
