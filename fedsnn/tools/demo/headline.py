"""What a visitor reads first and last: the one-line verdict atop an attack's results, the judge's
line (with one image, a judge verdict means something only when no guess gets it too), and the
page's glossary.

The verdict compares the attack with the guesses made without the update (the demo's chance
level): the image leaked when more of it is identified than any guess identifies, the label when
the inferred class counts are closer to the truth than the class prior's.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

from fedsnn.tools.demo.engine import Outcome

# level -> (text colour, background): red for a leak, amber for a partial one, green for none
COLOURS = {"leak": ("#8e0019", "#fde7ea"), "partial": ("#7a4b00", "#fff3dc"),
           "none": ("#1b5e20", "#e6f4e7")}


@dataclass(frozen=True)
class Verdict:
    """`level` is "leak", "partial" or "none"; `text` the one line."""

    level: str
    text: str


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _best_guess(outcome: Outcome, key: str) -> float | None:
    values = [v for s in outcome.baselines.values() if (v := _number(s.get(key))) is not None]
    return max(values) if values else None


def _image(outcome: Outcome) -> tuple[str, str]:
    """(level, words) for the image; for level "none" the words are only the comparison."""
    row = outcome.row
    psnr, guess = _number(row.get("psnr")), _best_guess(outcome, "psnr")
    if psnr is None:
        return "none", f"no image rebuilt (the attack {row.get('status')})"
    versus = f"{psnr:.0f} dB vs {guess:.0f} dB for a guess" if guess is not None else \
        f"{psnr:.0f} dB"
    found, samples = int(row.get("identified") or 0), len(row.get("true-labels") or [])
    if found > (_best_guess(outcome, "identified") or 0):
        what = "the image leaked" if samples == 1 else \
            f"{found} of {samples} images leaked (identified)"
        return "leak", f"{what}: {versus}"
    if guess is not None and psnr > guess:
        return "partial", f"the image partly leaked: closer than any guess ({versus}), " \
            "but not identified"
    return "none", versus


def _labels(row: dict[str, Any]) -> bool | None:
    """Whether the inferred class counts beat the class prior's (None: none inferred)."""
    inferred = _number((row.get("histogram") or {}).get("total-variation"))
    prior = _number((row.get("prior-histogram") or {}).get("total-variation"))
    if inferred is None or prior is None:
        return None
    return inferred < prior


def verdict(outcome: Outcome) -> Verdict:
    """The outcome's one line, e.g. "the image leaked: 71 dB vs 10 dB for a guess; the label
    leaked", or "nothing beyond a guess: 8 dB vs 10 dB for a guess; …"."""
    level, image = _image(outcome)
    noun = "label" if len(outcome.row.get("true-labels") or []) == 1 else "labels"
    labels = _labels(outcome.row)
    no_better = f"; the {noun} no better than the class prior" if labels is False else ""
    if level != "none":
        text = image + (f"; the {noun} leaked" if labels else no_better)
    elif labels:
        level, text = "partial", f"the {noun} leaked; the image did not ({image})"
    else:
        text = f"nothing beyond a guess: {image}{no_better}"
    early = "stopped" if stopped(outcome) else outcome.row.get("status")
    if early in ("stopped", "timeout", "diverged"):
        text += f" (the attack ended early, {early}: a lower bound)"
    return Verdict(level, text)


def stopped(outcome: Outcome) -> bool:
    """Whether the visitor stopped the attack (its best iterate is what was scored)."""
    return "stopped by the caller" in outcome.message


def verdict_html(outcome: Outcome, who: str = "") -> str:
    """The verdict as one coloured line (its class names the level: `verdict-leak`, …), after
    `who` when given (a model's name)."""
    found = verdict(outcome)
    colour, background = COLOURS[found.level]
    text = f"{who}: {found.text}" if who else found.text
    return (f"<div class='verdict verdict-{found.level}' style='color:{colour};"
            f"background:{background};border-left:6px solid {colour};padding:8px 12px;"
            f"font-size:17px;font-weight:600'>{html.escape(text)}</div>")


def judge_words(outcome: Outcome) -> str:
    """The judge's verdict on the reconstruction. With one image, "recognised" shows only when
    no guess is recognised too; anything else is "not meaningful" (a single 0 or 1)."""
    asr = _number(outcome.row.get("asr"))
    if asr is None:
        return "–"
    recognised = [name for name, s in outcome.baselines.items() if _number(s.get("asr"))]
    if len(outcome.row.get("true-labels") or []) != 1:
        best = _best_guess(outcome, "asr")
        return f"ASR {asr:.2f}" + (f" (the best guess: {best:.2f})" if best is not None else "")
    if asr == 1.0 and not recognised:
        return "recognised as the true label (no guess is)"
    if asr == 1.0:
        return f"not meaningful with one image: recognised, but so is the {recognised[0]} guess"
    return "not meaningful with one image: not recognised"


GLOSSARY = """\
## Glossary

- **identified**: the reconstruction's nearest image, pixel by pixel, among all the digits the \
demo holds (the train and test splits and the client's own) is the client's image: it is singled \
out, not only resembled. A guess almost never is (about 1 in 1,800 per image).
- **ASR** (attack success rate): the share of reconstructions that the judge, a classifier fit \
on the other split, labels as the true digit. Higher means more leakage, but only above the \
judge's majority-class baseline and above what the guesses get.
- **PSNR / SSIM**: how close the reconstruction is to the original, pixel by pixel. PSNR in dB: \
higher is closer (a guess gets about 6–15 dB; above 40 dB is a near copy). SSIM from −1 to 1: \
higher is closer (1 is identical). MSE: lower is closer.
- **null**: what the same scoring gives images that carry no information about the update: the \
chance level. A score shows leakage only when it beats its null. Here the nulls are the guesses: \
the mean image, black, mid-gray, and the class prior for the labels.
- **canary**: an update the server makes itself, on images it holds, and attacks like a \
client's. It knows the truth, so the canary's score shows what the attack can find in that \
setting (a positive control in a run's audit report).
- **FedSGD / FedAvg**: with FedSGD the client sends the gradient of one batch, the easiest case \
for the attacker; with FedAvg it trains E local epochs and sends the change of its weights, and \
the attack has to replay that training.
"""
