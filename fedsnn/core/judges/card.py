"""How reports state a judge: its accuracy beside the majority-class baseline, and ASR flagged
"not meaningful" when the judge does not clearly beat that baseline (`Judge.card()` gives the
fields; the audit report and the bench tables all write them with these helpers)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

NOT_MEANINGFUL = "not meaningful"


def stored_card(judge: Mapping[str, Any] | None, accuracy: float | None = None) -> dict[str, Any]:
    """A judge's card as stored in audit.json or a bench's results.json. Older files recorded
    only its accuracy (`accuracy`) and no majority-class baseline: their ASR is not shown to
    mean anything, so it is flagged."""
    if judge and "asr-meaningful" in judge:
        return dict(judge)
    accuracy = (judge or {}).get("test-accuracy", accuracy)
    if accuracy is None:
        return {}
    return {"accuracy": accuracy, "trained-on": "train split", "measured-on": "test split",
            "asr-meaningful": False,
            "training": {"stopped": "an older result: no majority-class baseline recorded"}}


def _pct(value: Any) -> str:
    return f"{100 * float(value):.1f} %" if value is not None and math.isfinite(float(value)) \
        else "–"


def judge_sentence(card: Mapping[str, Any]) -> str:
    """One sentence: where the judge was fit and measured, its accuracy and the baseline, and
    whether ASR means anything."""
    if not card:
        return "No judge: ASR is not reported."
    training = card.get("training", {})
    sentence = (f"Judge fit on the {card.get('trained-on', '?')} (early stopping: "
                f"{training.get('stopped', '?')}, {training.get('epochs', '?')} epochs), "
                f"accuracy {_pct(card.get('accuracy'))} on the {card.get('measured-on', '?')} "
                f"({card.get('evaluated-on', '?')} samples) against "
                f"{_pct(card.get('majority-baseline'))} for always answering the majority class.")
    if card.get("asr-meaningful"):
        return sentence
    return (sentence + f" The judge does not clearly beat that baseline: every ASR built on it is "
            f"**{NOT_MEANINGFUL}**.")


def flag_asr(text: str, card: Mapping[str, Any] | None) -> str:
    """An ASR cell: as is beside a meaningful judge, else marked "not meaningful"."""
    if card is None or card.get("asr-meaningful", True):
        return text
    return f"{NOT_MEANINGFUL} ({text})"
