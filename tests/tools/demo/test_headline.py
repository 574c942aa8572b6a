"""The demo's verdict line, its judge line and its glossary (issue 26, item 7): what a visitor
reads first says whether anything leaked beyond a guess, and a one-image judge verdict is
"not meaningful" unless no guess gets it too."""

from __future__ import annotations

from typing import Any

import torch

from fedsnn.tools.demo.app import metrics_markdown
from fedsnn.tools.demo.engine import Outcome, Scenario, run
from fedsnn.tools.demo.headline import GLOSSARY, Verdict, judge_words, verdict, verdict_html


def outcome(row: dict[str, Any], guess: dict[str, Any], message: str = "converged") -> Outcome:
    """An attack on one image (label 3) scored as `row`, beside three guesses scored as `guess`."""
    base = {"status": "ok", "true-labels": [3], "inferred-labels": [3], "identified": 0,
            "histogram": {"total-variation": 0.0}, "prior-histogram": {"total-variation": 1.0}}
    guesses = {name: {"psnr": 10.0, "ssim": 0.1, "mse": 0.1, "asr": 0.0, "identified": 0,
                      "samples": 1, **guess} for name in ("mean-image", "black", "gray-0.5")}
    return Outcome(attack="idlg", row={**base, **row}, baselines=guesses, epsilon={},
                   judge_card={"asr-meaningful": True}, originals=torch.zeros(1, 1, 28, 28),
                   reconstruction=None, message=message, seconds=1.0)


def test_an_identified_copy_and_its_label_read_as_a_red_leak() -> None:
    found = outcome({"psnr": 71.2, "identified": 1, "asr": 1.0}, {"psnr": 9.9})
    assert verdict(found).text == "the image leaked: 71 dB vs 10 dB for a guess; the label leaked"
    assert "verdict-leak" in verdict_html(found)


def test_noise_no_closer_than_a_guess_reads_as_nothing_beyond_a_guess() -> None:
    # the label counts no better than the class prior (both exact here), a noisy picture
    found = outcome({"psnr": 7.0, "asr": 1.0, "histogram": {"total-variation": 0.0},
                     "prior-histogram": {"total-variation": 0.0}}, {"psnr": 13.0})
    line = verdict(found)
    assert line.level == "none" and line.text.startswith("nothing beyond a guess: 7 dB vs 13 dB")
    assert "no better than the class prior" in line.text
    assert "verdict-none" in verdict_html(found)


def test_a_label_without_its_image_and_a_stopped_attack_are_said_so() -> None:
    found = outcome({"psnr": 8.0}, {"psnr": 13.0}, message="stopped by the caller after step 4")
    assert verdict(found) == Verdict(
        "partial", "the label leaked; the image did not (8 dB vs 13 dB for a guess) "
        "(the attack ended early, stopped: a lower bound)")


def test_with_one_image_a_recognised_guess_makes_the_judge_not_meaningful() -> None:
    # issue 26: "recognised" was printed for noise and for the black guess alike
    both = outcome({"psnr": 7.0, "asr": 1.0}, {"asr": 1.0})
    assert judge_words(both).startswith("not meaningful with one image")
    assert "recognised as the true label" not in metrics_markdown(both)
    assert judge_words(outcome({"psnr": 7.0, "asr": 0.0}, {})).startswith("not meaningful")
    alone = outcome({"psnr": 50.0, "asr": 1.0}, {})
    assert judge_words(alone) == "recognised as the true label (no guess is)"


def test_the_demos_digit_7_is_recognised_but_so_is_the_black_guess(victims) -> None:
    images, labels = victims.batch(*victims.digit(5), size=1, after=5)  # a 7: black reads as 7
    found = run(Scenario(model="mlp"), images, labels, victims)
    assert found.row["asr"] == 1.0 and found.baselines["black"]["asr"] == 1.0
    assert "**Judge verdict**: not meaningful with one image: recognised, but so is the black " \
        "guess" in metrics_markdown(found)
    assert verdict(found).level == "leak"  # identified: the image itself leaked


def test_the_glossary_names_every_term_the_page_uses() -> None:
    for term in ("identified", "ASR", "PSNR / SSIM", "null", "canary", "FedSGD / FedAvg"):
        assert f"**{term}**" in GLOSSARY
    assert "higher is closer" in GLOSSARY and "lower is closer" in GLOSSARY
