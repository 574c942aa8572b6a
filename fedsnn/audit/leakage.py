"""One audit's leakage in a few numbers: means over the scored attacks beside the guess."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedsnn.audit.report import judge_card

SCORES = ("psnr", "ssim", "asr", "label-accuracy")


def mean_leakage(audit: Mapping[str, Any]) -> dict[str, Any]:
    """Mean PSNR / SSIM / judge ASR / label accuracy over the scored rows of an audit.json, the
    number scored, the mean-image guess's PSNR and SSIM, the judge's test accuracy and its card."""
    rows = [row for row in audit["attacks"] if row.get("psnr") is not None]

    def mean(key: str) -> float | None:
        values = [row[key] for row in rows if row.get(key) is not None]
        return sum(values) / len(values) if values else None

    guess = audit["baselines"].get("mean-image", {})  # none when nothing could be scored
    return {**{key: mean(key) for key in SCORES}, "scored": len(rows),
            "guess-psnr": guess.get("psnr"), "guess-ssim": guess.get("ssim"),
            "judge-accuracy": audit["judge-test-accuracy"], "judge": judge_card(audit)}
