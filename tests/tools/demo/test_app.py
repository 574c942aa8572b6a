"""The page's drawing helpers: pictures with a missing row, and the metrics of a failed attack."""

from __future__ import annotations

import torch

from fedsnn.tools.demo.app import SCALE, figure, metrics_markdown, picture
from fedsnn.tools.demo.engine import Scenario, run


def test_a_picture_keeps_a_gray_row_for_a_missing_reconstruction() -> None:
    images = torch.rand(3, 1, 28, 28)
    drawn = picture(images, None)
    assert drawn.dtype.name == "uint8" and drawn.shape == (SCALE * 58, SCALE * 88)
    assert (drawn[-SCALE * 28:] == round(0.35 * 255)).all()


def test_a_failed_attack_is_shown_as_failed_beside_the_guesses(victims) -> None:
    images, labels = victims.batch(*victims.digit(7), size=1, after=7)
    outcome = run(Scenario(model="mlp", defense="local DP", epsilon=1.0), images, labels, victims)
    assert outcome.row["status"] == "failed" and outcome.reconstruction is None
    text = metrics_markdown(outcome)
    assert "failed" in text and "mean-image guess" in text and "local-dp-client-epsilon" in text
    picture(outcome.originals, outcome.reconstruction)  # draws without a reconstruction


def test_a_figure_is_an_inline_png() -> None:
    drawn = picture(torch.rand(1, 1, 28, 28), torch.rand(1, 1, 28, 28))
    assert figure(drawn, "a <caption>").count("data:image/png;base64,") == 1
    assert "&lt;caption&gt;" in figure(drawn, "a <caption>")


def test_the_metrics_show_identified_and_the_class_histogram_beside_their_guesses(victims) -> None:
    images, labels = victims.batch(*victims.digit(3), size=2, after=3)
    scenario = Scenario(model="mlp", update_mode="fedavg", local_epochs=2, batch_size=2,
                        iterations=5)
    outcome = run(scenario, images, labels, victims)
    text = metrics_markdown(outcome)
    assert f"| {outcome.row['identified']} / 2 |" in text and "| 0 / 2 |" in text
    assert "Class histogram" in text and "class-prior guess" in text
